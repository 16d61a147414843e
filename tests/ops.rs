//! Operations: live /metrics through promtool, the alert rules and their
//! unit tests, the dashboard's queries, the systemd unit, and sd_notify.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn synced_agent(tag: &str, ips: [&str; 3]) -> (Vec<FakeServer>, Agent, std::net::SocketAddr) {
    let mut servers = honest_fakes(&ips);
    servers.push(FakeServer::start(
        &ips[0].replace(".7", ".8"),
        FakeSpec {
            offset_ns: 80_000_000,
            ..FakeSpec::honest()
        },
    ));
    let addrs = addrs_of(&servers);
    let (g, http) = start_agent(tag, &addrs, &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(15), || get_json(
        http, "/v1/now"
    )["status"]
        == "synchronized"));
    // The skew gauge appears at the next local-clock refresh (every 0.5 s).
    assert!(wait_until(Duration::from_secs(3), || get_json(
        http,
        "/v1/status"
    )["offset_ns"]
        .is_i64()));
    (servers, g, http)
}

/// Metric families exported by a live agent (names as Prometheus stores them).
fn exported(http: std::net::SocketAddr) -> (String, BTreeSet<String>) {
    let (code, text) = get(http, "/metrics").unwrap();
    assert_eq!(code, 200);
    let names = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    (text, names)
}

#[test]
fn live_metrics_pass_promtool_and_name_the_contract() {
    let (_servers, _agent, http) =
        synced_agent("metrics", ["127.0.0.71", "127.0.0.72", "127.0.0.73"]);
    let (text, names) = exported(http);
    for n in [
        "skewd_clock_error_bound_seconds",
        "skewd_clock_offset_seconds",
        "skewd_clock_frequency_ppm",
        "skewd_clock_status",
        "skewd_source_offset_seconds",
        "skewd_source_delay_seconds",
        "skewd_source_root_distance_seconds",
        "skewd_source_falseticker",
        "skewd_source_reachable",
        "skewd_clock_steps_total",
        "skewd_bound_violations_total",
        "skewd_ntp_requests_total",
        "skewd_build_info",
    ] {
        assert!(names.contains(n), "{n} missing from /metrics");
    }
    assert!(
        text.contains("skewd_clock_status{status=\"synchronized\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("skewd_source_falseticker{source=\"127.0.0.81:"),
        "liar labelled: {text}"
    );
    assert!(text.contains("result=\"ok\""));
    promtool_check_metrics(&text);
}

/// Every alert has a `runbook_url` whose section exists in
/// docs/runbook.md, and a promtool case that fires it.
#[test]
fn every_alert_has_a_runbook_section_and_a_firing_case() {
    let rules = std::fs::read_to_string(format!("{ROOT}/dashboards/skewd-rules.yml")).unwrap();
    let runbook = std::fs::read_to_string(format!("{ROOT}/docs/runbook.md")).unwrap();
    let cases = std::fs::read_to_string(format!("{ROOT}/dashboards/skewd-rules.test.yml")).unwrap();
    // GitHub-style anchors of the runbook's headings.
    let anchors: Vec<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    let urls: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .map(|u| u.trim_matches('"'))
        .collect();
    assert_eq!(urls.len(), alerts.len(), "one runbook_url per alert");
    for (alert, url) in alerts.iter().zip(&urls) {
        let (file, anchor) = url.split_once('#').expect("an anchor");
        assert_eq!(file, "file:///usr/share/doc/skewd/runbook.md");
        assert_eq!(anchor, alert.to_lowercase(), "{alert}'s runbook_url");
        assert!(
            anchors.iter().any(|a| a == anchor),
            "no section {anchor} in docs/runbook.md"
        );
        // A case where it fires (exp_alerts with labels), besides the silent ones.
        let fires = cases.split("alertname: ").skip(1).any(|c| {
            c.starts_with(alert) && {
                let rest = &c[alert.len()..];
                let next = rest.find("alertname").unwrap_or(rest.len());
                rest[..next].contains("exp_labels")
            }
        });
        assert!(fires, "no promtool case fires {alert}");
    }
}

#[test]
fn alert_rules_check_and_unit_tests_pass() {
    if !need("promtool") {
        return;
    }
    for args in [
        vec!["check", "rules", "dashboards/skewd-rules.yml"],
        vec!["test", "rules", "dashboards/skewd-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(ROOT)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dashboard_queries_name_only_exported_metrics_or_recording_rules() {
    let (servers, _agent, http) = synced_agent("dash", ["127.0.0.74", "127.0.0.75", "127.0.0.76"]);
    let (_, mut known) = exported(http);
    let rules = std::fs::read_to_string(format!("{ROOT}/dashboards/skewd-rules.yml")).unwrap();
    for l in rules.lines() {
        if let Some(r) = l.trim().strip_prefix("- record: ") {
            known.insert(r.trim().to_owned());
        }
    }
    known.insert("up".into());
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/dashboards/skewd.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 6, "{} panels", panels.len());
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"instance"));
    let mut exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    // The query variables' definitions (label_values(...)) name metrics too.
    exprs.extend(
        dash["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["definition"].as_str())
            .map(str::to_owned),
    );
    let promql_words = [
        "sum",
        "by",
        "rate",
        "increase",
        "max",
        "min",
        "label_values",
        "job",
        "instance",
        "source",
        "result",
        "status",
        "skewd",
    ];
    for e in &exprs {
        // Identifiers outside quotes, braces' label names and [ranges].
        let mut in_quote = false;
        let cleaned: String = e
            .chars()
            .map(|c| {
                if c == '"' {
                    in_quote = !in_quote;
                    ' '
                } else if in_quote {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        for word in cleaned.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.is_empty()
                || word.chars().next().unwrap().is_ascii_digit()
                || promql_words.contains(&word)
            {
                continue;
            }
            if word.starts_with("skewd") || word == "up" {
                assert!(
                    known.contains(word),
                    "dashboard query {e:?} names {word}, which nothing exports"
                );
            }
        }
    }
    assert!(exprs.iter().any(|e| e.contains("$instance")));

    // Every query runs on a real Prometheus scraping this agent as job
    // "skewd", with the variables as Grafana interpolates them (a value
    // regex-escaped; All as an alternation), and returns series; what the
    // state panels then show is read through their own value mappings.
    if !need("prometheus") {
        return;
    }
    let dir = temp_dir("dash-prom");
    let (_prom, prom) = prometheus(
        &dir,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: skewd\n    static_configs:\n      - targets: ['{http}']\n"
        ),
    );
    let instance = format!("({})", http.to_string().replace('.', "\\\\."));
    let interpolate = |e: &str| e.replace("$job", "skewd").replace("$instance", &instance);
    let query = |q: &str| -> Vec<serde_json::Value> {
        let enc: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let Some((code, body)) = get(prom, &format!("/api/v1/query?query={enc}")) else {
            return vec![];
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(
            code == 200 || code == 503,
            "Prometheus refused {q}: {code} {body}"
        );
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    // Text a state panel shows for a sample (its first matching value mapping).
    let shown = |p: &serde_json::Value, sample: &serde_json::Value| -> String {
        let v = sample["value"][1].as_str().unwrap();
        p["fieldConfig"]["defaults"]["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|m| m["options"].get(v))
            .map_or(format!("unmapped {v}"), |r| {
                r["text"].as_str().unwrap().to_owned()
            })
    };
    let liar = "127.0.0.84:";
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(40), || {
        for p in panels {
            for t in p["targets"].as_array().unwrap() {
                let e = interpolate(t["expr"].as_str().unwrap());
                let res = query(&e);
                if res.is_empty() {
                    last = format!("{}: {e} returns nothing", p["title"]);
                    return false;
                }
                if p["type"] != "state-timeline" {
                    continue;
                }
                // One lane per source, the honest ones too (shown "ok").
                if e.contains("skewd_source_") && res.len() != servers.len() {
                    last = format!("{}: {e} returns {} series", p["title"], res.len());
                    return false;
                }
                for r in &res {
                    let text = shown(p, r);
                    let want = if e.contains("skewd_clock_status") {
                        "synchronized"
                    } else if e.contains("skewd_source_falseticker") {
                        if r["metric"]["source"].as_str().unwrap().starts_with(liar) {
                            "falseticker"
                        } else {
                            "ok"
                        }
                    } else if e.contains("skewd_source_reachable") {
                        "reachable"
                    } else if e.starts_with("up{") {
                        "up"
                    } else {
                        panic!("{}: no expectation for {e}", p["title"])
                    };
                    if text != want {
                        last = format!("{}: {r} shows {text:?}, not {want:?}", p["title"]);
                        return false;
                    }
                }
            }
        }
        true
    });
    assert!(ok, "{last}");
    // The variables' queries: label_values(SELECTOR, LABEL) finds this agent.
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(d) = v["definition"].as_str() else {
            continue;
        };
        let (sel, label) = d
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .and_then(|d| d.rsplit_once(", "))
            .unwrap_or_else(|| panic!("{d}: not label_values(selector, label)"));
        let want = match label {
            "job" => "skewd".to_owned(),
            "instance" => http.to_string(),
            _ => panic!("{d}: unexpected variable"),
        };
        let found: Vec<_> = query(&interpolate(sel))
            .iter()
            .filter_map(|r| r["metric"][label].as_str().map(str::to_owned))
            .collect();
        assert!(found.contains(&want), "{d} finds {found:?}, not {want}");
    }
}

#[test]
fn dashboard_imports_filters_and_cannot_read_inverted() {
    use serde_json::{json, Value};
    let text = std::fs::read_to_string(format!("{ROOT}/dashboards/skewd.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let rules = std::fs::read_to_string(format!("{ROOT}/dashboards/skewd-rules.yml")).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let exprs = |p: &Value| -> Vec<String> {
        p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap().to_owned())
            .collect()
    };

    // Import: a Prometheus data source input, which the data source
    // variable defaults to, and everything the dashboard needs.
    let input = dash["__inputs"]
        .as_array()
        .expect("__inputs")
        .iter()
        .find(|i| i["type"] == "datasource" && i["pluginId"] == "prometheus")
        .expect("a Prometheus data source input");
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    assert_eq!(
        ds["current"]["value"],
        format!("${{{}}}", input["name"].as_str().unwrap()),
        "the data source variable defaults to the one picked on import"
    );
    let requires = dash["__requires"].as_array().expect("__requires");
    let requires = |ty: &str, id: &str| requires.iter().any(|r| r["type"] == ty && r["id"] == id);
    assert!(requires("grafana", "grafana") && requires("datasource", "prometheus"));
    for p in panels {
        let ty = p["type"].as_str().unwrap();
        assert!(requires("panel", ty), "__requires lacks the {ty} panel");
    }
    // Every data source reference, wherever it is, is the variable.
    fn datasources(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "datasource" {
                        out.push(x.clone());
                    }
                    datasources(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| datasources(x, out)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    datasources(&dash, &mut refs);
    let targets: usize = panels.iter().map(|p| exprs(p).len()).sum();
    assert!(
        refs.len() >= panels.len() + targets,
        "{} references",
        refs.len()
    );
    for r in refs {
        assert_eq!(r, json!({"type": "prometheus", "uid": "${datasource}"}));
    }

    // The filter: job (default skewd) and instance within it; every metric
    // in every query carries both, and nothing names a job.
    let job = var("job");
    assert_eq!(job["definition"], "label_values(skewd_build_info, job)");
    assert_eq!(job["query"]["query"], job["definition"]);
    assert!(job["current"]["value"].to_string().contains("\"skewd\""));
    let instance = var("instance");
    assert_eq!(
        instance["definition"],
        "label_values(skewd_build_info{job=~\"$job\"}, instance)"
    );
    assert_eq!(instance["query"]["query"], instance["definition"]);
    assert!(
        !text.contains(r#"job=\"skewd\""#),
        "a hard-coded job is left"
    );
    for p in panels {
        let title = &p["title"];
        assert!(!exprs(p).is_empty(), "{title}: no query");
        for e in exprs(p) {
            assert!(!e.contains("job=\"skewd\""), "{title}: {e}");
            assert!(
                !e.contains("skewd:"),
                "{title}: {e}: recording rules ignore the filter"
            );
            assert!(
                e.contains("$job") && e.contains("$instance"),
                "{title}: {e}"
            );
            // Each metric name (outside quotes) is followed by the filter.
            let mut in_quote = false;
            let masked: String = e
                .chars()
                .map(|c| {
                    if c == '"' {
                        in_quote = !in_quote;
                    }
                    if in_quote || c == '"' {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
            let mut metrics = 0;
            for (i, _) in masked.match_indices(|c: char| ident(c)) {
                let word: String = masked[i..].chars().take_while(|&c| ident(c)).collect();
                if (i > 0 && masked[..i].ends_with(ident))
                    || !(word.starts_with("skewd") || word == "up")
                {
                    continue;
                }
                metrics += 1;
                let selector = e[i + word.len()..].split('}').next().unwrap();
                assert!(
                    selector.starts_with('{')
                        && selector.contains("job=~\"$job\"")
                        && selector.contains("instance=~\"$instance\""),
                    "{title}: {word} in {e} ignores the filter"
                );
            }
            assert!(metrics > 0, "{title}: {e} names no metric");
        }
    }

    // Every panel: a one-line description naming the alert that relates
    // (or saying there is none; named alerts exist), a unit or mappings,
    // thresholds from a base colour, a colour mode.
    let alerts: BTreeSet<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::trim)
        .collect();
    let mappings = |p: &Value| p["fieldConfig"]["defaults"]["mappings"].as_array().cloned();
    for p in panels {
        let title = &p["title"];
        let d = p["description"].as_str().unwrap_or_default();
        assert!(!d.trim().is_empty() && !d.contains('\n'), "{title}: {d:?}");
        assert!(
            d.to_lowercase().contains("alert"),
            "{title}: {d:?} names no alert"
        );
        for w in d.split(|c: char| !c.is_ascii_alphanumeric()) {
            assert!(
                !w.starts_with("Skewd") || alerts.contains(w),
                "{title}: {w} is no alert of skewd-rules.yml"
            );
        }
        let defaults = &p["fieldConfig"]["defaults"];
        let ty = p["type"].as_str().unwrap();
        let mapped = mappings(p).is_some_and(|m| !m.is_empty());
        assert!(
            defaults["unit"].is_string() || (matches!(ty, "state-timeline" | "stat") && mapped),
            "{title}: no unit"
        );
        assert!(
            defaults["color"]["mode"].is_string(),
            "{title}: no colour mode"
        );
        let steps = defaults["thresholds"]["steps"]
            .as_array()
            .expect("thresholds");
        assert!(steps[0]["value"].is_null(), "{title}: no base colour");
        let values: Vec<f64> = steps[1..]
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{title}: {values:?}"
        );
        assert!(steps
            .iter()
            .all(|s| s["color"].as_str().is_some_and(|c| !c.is_empty())));
    }

    // The alerts' levels, drawn where their metric is shown: the colour
    // Grafana gives a value is that of the last step at or below it.
    let colour_at = |p: &Value, x: f64| -> String {
        let steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            .as_array()
            .unwrap();
        steps
            .iter()
            .rev()
            .find(|s| s["value"].as_f64().is_none_or(|v| v <= x))
            .unwrap()["color"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let panel = |f: &dyn Fn(&str) -> bool| -> &Value {
        let found: Vec<&Value> = panels.iter().filter(|p| f(&exprs(p)[0])).collect();
        assert_eq!(found.len(), 1, "{} panels match", found.len());
        found[0]
    };
    let error_bound = panel(&|e| e.starts_with("skewd_clock_error_bound_seconds{"));
    let offset = panel(&|e| e.starts_with("skewd_clock_offset_seconds{"));
    let fleet = panel(&|e| {
        e.starts_with("max(skewd_clock_offset_seconds{")
            && e.contains(") - min(skewd_clock_offset_seconds{")
    });
    // (panel, value, colour): SkewdErrorBoundHigh > 10 ms,
    // SkewdClockSkewHigh abs > 100 ms, SkewdFleetSkew > 50 ms.
    for (p, x, want) in [
        (error_bound, 0.0005, "green"),
        (error_bound, 0.002, "yellow"),
        (error_bound, 0.0099, "yellow"),
        (error_bound, 0.0101, "red"),
        (offset, 0.0, "green"),
        (offset, 0.099, "green"),
        (offset, -0.099, "green"),
        (offset, 0.101, "red"),
        (offset, -0.101, "red"),
        (fleet, 0.0, "green"),
        (fleet, 0.049, "green"),
        (fleet, 0.051, "red"),
    ] {
        assert_eq!(colour_at(p, x), want, "{} at {x}", p["title"]);
        let style = &p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"];
        assert!(
            style.is_string() && style != "off",
            "{}: thresholds not drawn",
            p["title"]
        );
    }

    // State panels: what Grafana shows for a value is its first matching
    // mapping; 0 and 1 (or each status) get a text and a colour, the bad one
    // red, and the thresholds agree should the mappings be lost.
    let shown = |p: &Value, x: f64| -> Option<(String, String)> {
        mappings(p).unwrap().iter().find_map(|m| {
            let r = match m["type"].as_str().unwrap() {
                "value" => m["options"].get(format!("{x}"))?,
                "range" => {
                    let o = &m["options"];
                    let inside = o["from"].as_f64().is_none_or(|f| f <= x)
                        && o["to"].as_f64().is_none_or(|t| x <= t);
                    inside.then_some(&o["result"])?
                }
                _ => return None,
            };
            Some((
                r["text"].as_str()?.to_owned(),
                r["color"].as_str()?.to_owned(),
            ))
        })
    };
    let states = ["synchronized", "free_running", "disrupted", "unknown"];
    let mut seen = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] == "state-timeline") {
        let title = &p["title"];
        let e = &exprs(p)[0];
        assert_eq!(exprs(p).len(), 1, "{title}: one query, one value per lane");
        let two: &[(&str, &str, &str)] = if e.starts_with("skewd_source_falseticker{") {
            &[("0", "ok", "green"), ("1", "falseticker", "red")]
        } else if e.starts_with("skewd_source_reachable{") {
            &[("0", "unreachable", "red"), ("1", "reachable", "green")]
        } else if e.starts_with("up{") {
            &[("0", "down", "red"), ("1", "up", "green")]
        } else if e.contains("skewd_clock_status{") {
            &[]
        } else {
            panic!("{title}: a state panel this test does not know: {e}")
        };
        seen.insert(two.first().map_or("status", |t| t.1));
        for &(v, text, colour) in two {
            let x: f64 = v.parse().unwrap();
            assert_eq!(
                shown(p, x),
                Some((text.to_owned(), colour.to_owned())),
                "{title} at {v}"
            );
            assert_eq!(colour_at(p, x), colour, "{title}: thresholds at {v}");
        }
        if !two.is_empty() {
            continue;
        }
        // The status lane: each status series weighted (distinct powers of
        // two, summed), so one name per value and any mixture none.
        let mut weights = Vec::new();
        for (s, colour) in states.iter().zip(["green", "orange", "red", ""]) {
            let pat = format!("status=\"{s}\"}} * ");
            let at = e
                .find(&pat)
                .unwrap_or_else(|| panic!("{title}: {e} lacks {pat}"));
            let w: u32 = e[at + pat.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(w.is_power_of_two(), "{title}: weight {w}");
            let (text, c) =
                shown(p, f64::from(w)).unwrap_or_else(|| panic!("{title}: {w} unmapped"));
            assert_eq!(text, *s, "{title} at {w}");
            if colour.is_empty() {
                assert!(
                    matches!(c.as_str(), "#8e8e8e" | "gray" | "grey" | "text"),
                    "{s}: {c}"
                );
            } else {
                assert_eq!(c, colour, "{title}: {s}");
            }
            weights.push(w);
        }
        assert!(
            e.starts_with("sum by (job, instance) ("),
            "{title}: one lane per host: {e}"
        );
        for (i, a) in weights.iter().enumerate() {
            assert!(!weights[i + 1..].contains(a), "{title}: weight {a} twice");
            for b in weights[i + 1..].iter().chain([&0]) {
                let text = shown(p, f64::from(a + b)).map(|t| t.0);
                let single = *b == 0;
                assert_eq!(
                    text.as_deref().is_some_and(|t| states.contains(&t)),
                    single,
                    "{title}: {a}+{b} shows {text:?}"
                );
            }
        }
        let none = shown(p, 0.0).map(|t| t.0);
        assert!(
            none.as_deref().is_none_or(|t| !states.contains(&t)),
            "{title}: 0 shows {none:?}"
        );
    }
    assert_eq!(seen.len(), 4, "state panels: {seen:?}");

    // Layout: within 24 columns, no two panels overlap, ids unique.
    let rect = |p: &Value| {
        let g = &p["gridPos"];
        let n = |k: &str| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{}: gridPos.{k}", p["title"]))
        };
        (n("x"), n("y"), n("w"), n("h"))
    };
    for (i, a) in panels.iter().enumerate() {
        let (x, y, w, h) = rect(a);
        assert!(
            w >= 1 && h >= 1 && x + w <= 24,
            "{}: {:?}",
            a["title"],
            rect(a)
        );
        for b in &panels[i + 1..] {
            let (bx, by, bw, bh) = rect(b);
            assert!(
                !(x < bx + bw && bx < x + w && y < by + bh && by < y + h),
                "{} and {} overlap",
                a["title"],
                b["title"]
            );
            assert_ne!(a["id"], b["id"], "{} and {}", a["title"], b["title"]);
        }
    }
}

#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    if !need("systemd-analyze") {
        return;
    }
    let unit = std::fs::read_to_string(format!("{ROOT}/systemd/skewd.service")).unwrap();
    for k in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "RuntimeDirectory=skewd",
        "RuntimeDirectoryPreserve=yes",
        "StateDirectory=skewd",
        "LimitNOFILE=",
        "MemoryMax=",
    ] {
        assert!(unit.contains(k), "{k} missing");
    }
    assert!(
        !unit.contains("ProtectClock=yes"),
        "ProtectClock blocks the read-only adjtimex"
    );
    let dir = temp_dir("unit");
    let path = dir.join("skewd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/skewd", env!("CARGO_BIN_EXE_skewd")),
    )
    .unwrap();
    // The optional socket unit beside it (socket activation of the HTTP
    // port).
    let socket = dir.join("skewd.socket");
    std::fs::copy(format!("{ROOT}/systemd/skewd.socket"), &socket).unwrap();
    // The unit other services order after at boot.
    let wait = dir.join("skewd-wait-sync.service");
    let wait_unit =
        std::fs::read_to_string(format!("{ROOT}/systemd/skewd-wait-sync.service")).unwrap();
    for k in [
        "Type=oneshot",
        "RemainAfterExit=yes",
        "After=skewd.service",
        "wait-sync",
    ] {
        assert!(
            wait_unit.contains(k),
            "{k} missing from skewd-wait-sync.service"
        );
    }
    std::fs::write(
        &wait,
        wait_unit.replace("/usr/local/bin/skewd", env!("CARGO_BIN_EXE_skewd")),
    )
    .unwrap();
    for unit in [&path, &socket, &wait] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains(&*dir.display().to_string()),
            "verify {}: {err}",
            unit.display()
        );
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("exposure score");
    eprintln!("systemd exposure {score}");
    assert!(
        out.status.success() && score <= 2.0,
        "exposure {score}: {text}"
    );
}

#[test]
fn sd_notify_ready_watchdog_status_stopping() {
    let dir = temp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .args([
            "run",
            "--server",
            "127.0.0.1:9",
            "--listen",
            &listen,
            "--shm",
        ])
        .arg(dir.join("clock"))
        .arg("--state-dir")
        .arg(&dir)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = Guard {
        child,
        name: "notify".into(),
    };
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(5)
        && !(seen.contains("READY=1") && seen.contains("WATCHDOG=1"))
    {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(seen.contains("READY=1"), "{seen}");
    assert!(seen.contains("WATCHDOG=1"), "{seen}");
    assert!(seen.contains("STATUS="), "{seen}");
    agent.signal(libc::SIGTERM);
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(5) && !seen.contains("STOPPING=1") {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    // A SIGTERM that arrives before the handler exists kills the agent
    // with the default action: say so instead of only "no STOPPING".
    let exited = agent.child.try_wait().ok().flatten();
    assert!(
        seen.contains("STOPPING=1"),
        "no STOPPING=1 (agent exit: {exited:?}): {seen}"
    );
    let status = agent.stop().expect("agent exits after SIGTERM");
    assert!(status.success(), "agent exit {status:?}");
}

/// Every command reads the config (`--config`, else the default file):
/// `skewd status` finds an agent on the config's port, `skewd now` reads
/// the config's segment, and `check-config` says what the servers tolerate
/// (and warns about three).
#[test]
fn commands_follow_the_config_file() {
    let servers = honest_fakes(&["127.0.0.99", "127.0.0.100", "127.0.0.101", "127.0.0.102"]);
    let dir = temp_dir("cfgcli");
    let port = free_port();
    let cfg = dir.join("skewd.toml");
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\nshm_path = \"{}\"\nstate_dir = \"{}\"\npoll_interval_s = 1\n",
        dir.join("clock").display(),
        dir.display()
    );
    for s in addrs_of(&servers) {
        text.push_str(&format!("[[server]]\naddress = \"{s}\"\n"));
    }
    std::fs::write(&cfg, &text).unwrap();
    let _agent = Guard {
        child: Command::new(env!("CARGO_BIN_EXE_skewd"))
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap(),
        name: "cfgcli".into(),
    };
    let skewd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_skewd"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(15), || {
            let out = skewd(&["now", "--json"]);
            String::from_utf8_lossy(&out.stdout).contains("\"synchronized\"")
        }),
        "{}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    // Human output: RFC 3339 times, the bound in a readable unit.
    let out = skewd(&["now"]);
    let said = String::from_utf8_lossy(&out.stdout);
    let year = said.split_whitespace().nth(1).unwrap_or("");
    assert!(
        year.len() >= 30 && year.ends_with('Z') && year.contains('T'),
        "{said}"
    );
    // (below 10 µs in whole ns: a narrow bound on loopback can be.)
    let unit = said
        .split_whitespace()
        .skip_while(|w| *w != "epsilon")
        .nth(2)
        .unwrap_or("");
    assert!(["ns", "µs", "ms"].contains(&unit), "{said}");
    let out = skewd(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["sources"].as_array().unwrap().len(), 4);
    // The human table, with what ε is made of and where its ends come from.
    let out = skewd(&["status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    for line in [
        "error bound made of",
        "network delay",
        "lower end from 127.0.0.",
        "upper end from 127.0.0.",
    ] {
        assert!(said.contains(line), "no {line:?} in {said}");
    }
    let out = skewd(&["check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("survives 1 unreachable"),
        "{said}"
    );
    // Three servers: a warning.
    let three = dir.join("three.toml");
    let servers3: String = (1..=3)
        .map(|i| format!("[[server]]\naddress = \"10.0.0.{i}:123\"\n"))
        .collect();
    std::fs::write(&three, servers3).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .arg("check-config")
        .arg(&three)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("warning: with 3 servers one server down"),
        "{said}"
    );
}
