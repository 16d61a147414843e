//! The status page at `/`, seen by a real browser (headless chromium): it
//! renders with no console message (its Content-Security-Policy forbids
//! every external asset and script, so one would show as a violation), a
//! screenshot is taken, and its figures match `/v1/status`.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

/// Headless chromium on `url` with `args`; returns (stdout, console lines).
fn chromium(dir: &std::path::Path, url: &str, args: &[&str]) -> (String, Vec<String>) {
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1000,1400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium: {out:?}");
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The value of attribute `name` in the tag that starts at `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let end = tag.find('>')?;
    let tag = &tag[..end];
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// The tag with `id="id"`.
fn by_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    &dom[dom[..at].rfind('<').unwrap()..]
}

#[test]
fn the_status_page_renders_in_a_browser_and_matches_the_api() {
    if !need("chromium") {
        return;
    }
    // Four honest servers and one 50 ms ahead: the page must show it as
    // the falseticker it is, with a positive offset (source − skewd).
    let mut servers = honest_fakes(&["127.0.0.111", "127.0.0.112", "127.0.0.113", "127.0.0.114"]);
    let mut liar = FakeSpec::honest();
    liar.offset_ns = 50_000_000;
    servers.push(FakeServer::start("127.0.0.115", liar));
    let (agent, http) = start_agent("page-browser", &addrs_of(&servers), &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(20), || {
        let v = get_json(http, "/v1/status");
        v["status"] == "synchronized" && source_states(&v)[4] == "falseticker"
    }));
    // Three points of history (one every 10 s).
    std::thread::sleep(Duration::from_secs(21));

    let url = format!("http://{http}/");
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skewd-status-page.png");
    let _ = std::fs::remove_file(&shot);
    let (_, console) = chromium(
        &agent.dir,
        &url,
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(console.is_empty(), "console messages: {console:#?}");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    // Width and height from the IHDR chunk.
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1000, 1400));
    eprintln!("screenshot: {}", shot.display());

    let before = get_json(http, "/v1/status");
    let (dom, console) = chromium(&agent.dir, &url, &["--dump-dom"]);
    let after = get_json(http, "/v1/status");
    assert!(console.is_empty(), "console messages: {console:#?}");

    // The figures are /v1/status's, read within a second of each other.
    assert_eq!(
        attr(by_id(&dom, "status"), "data-status"),
        Some("synchronized")
    );
    let eps: i64 = attr(by_id(&dom, "epsilon"), "data-ns")
        .unwrap()
        .parse()
        .unwrap();
    let near = |page: i64, key: &dyn Fn(&serde_json::Value) -> i64, slack: i64| {
        let (a, b) = (key(&before), key(&after));
        page >= a.min(b) - slack && page <= a.max(b) + slack
    };
    assert!(
        near(eps, &|v| v["epsilon_ns"].as_i64().unwrap(), 200_000),
        "page ε {eps} vs {} / {}",
        before["epsilon_ns"],
        after["epsilon_ns"]
    );
    let skew: i64 = attr(by_id(&dom, "skew"), "data-ns")
        .unwrap()
        .parse()
        .unwrap();
    assert!(near(skew, &|v| v["offset_ns"].as_i64().unwrap(), 200_000));
    let rows: Vec<&str> = dom
        .match_indices("<tr data-name=")
        .map(|(i, _)| &dom[i..])
        .collect();
    let sources = after["sources"].as_array().unwrap();
    assert_eq!(rows.len(), sources.len());
    for (i, (row, s)) in rows.iter().zip(sources).enumerate() {
        assert_eq!(attr(row, "data-name"), s["name"].as_str());
        assert_eq!(attr(row, "data-state"), s["state"].as_str());
        let off: i64 = attr(row, "data-offset-ns").unwrap().parse().unwrap();
        assert!(
            near(
                off,
                &|v| v["sources"][i]["offset_ns"].as_i64().unwrap(),
                200_000
            ),
            "source {i}: page {off} vs {} / {}",
            before["sources"][i]["offset_ns"],
            after["sources"][i]["offset_ns"]
        );
    }
    // The liar: a falseticker 50 ms ahead, shown with its sign.
    let liar_off: i64 = attr(rows[4], "data-offset-ns").unwrap().parse().unwrap();
    // (Its sample's centre sits up to half a round trip off: loaded
    // machines make that milliseconds.)
    assert!((45_000_000..55_000_000).contains(&liar_off), "{liar_off}");
    let shown = skewd::human::signed_ns(liar_off);
    assert!(
        shown.starts_with('+') && rows[4].contains(&shown),
        "{shown}: {}",
        &rows[4][..400.min(rows[4].len())]
    );
    // The three charts drew the history.
    for id in ["chart-epsilon", "chart-skew", "chart-sources"] {
        let svg = by_id(&dom, id);
        let svg = &svg[..svg.find("</svg>").unwrap()];
        assert!(
            svg.contains("<path") || svg.contains("<polyline"),
            "{id} is empty"
        );
    }
    assert!(!dom.contains("No history yet"));
    // What ε is made of: the bar's parts and the agreement add up to the
    // ε shown (same render), and both ends are honest servers.
    let svg = by_id(&dom, "chart-budget");
    let svg = &svg[..svg.find("</svg>").unwrap()];
    let parts: f64 = svg
        .match_indices("<rect ")
        .map(|(i, _)| attr(&svg[i..], "data-ns").unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(svg.contains("data-part=\"network_delay\""), "{svg}");
    let agreement: f64 = attr(by_id(&dom, "budget-agreement"), "data-ns")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (parts + agreement - eps as f64).abs() <= 6.0,
        "budget {parts} + {agreement} vs ε {eps}"
    );
    let note = by_id(&dom, "budget-agreement");
    assert!(!note[..note.find("</p>").unwrap()].contains("127.0.0.115"));
}
