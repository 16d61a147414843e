//! `skewd generate-assets DIR` (hidden): the man pages and the shell
//! completions, made from the CLI's clap definition so they never drift from
//! `--help`. `packaging/build-deb.sh` runs it and puts the files in the .deb.

use anyhow::Context;
use clap::Command;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The shells completions are written for, and their files: `skewd.bash`,
/// `_skewd` (zsh), `skewd.fish`.
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Write into `dir` (created if missing) a man page for `cmd` (`skewd.1`)
/// and one per visible subcommand (`skewd-run.1`, ...), uncompressed, and
/// the bash, zsh and fish completions. Hidden subcommands (this one) appear
/// in none of them. Returns the files written, in order.
pub fn generate(cmd: Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("{} exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let mut written = Vec::new();
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    // Every page's footer names the program and its version ("skewd 0.1.0");
    // clap_mangen's default for a subcommand's page is "run ".
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    man_pages(&cmd, source.trim(), dir, &mut written)?;
    let bin = cmd.get_name().to_owned();
    let mut public = visible(&cmd);
    for shell in SHELLS {
        let path =
            clap_complete::generate_to(shell, &mut public, &bin, dir).with_context(|| {
                format!(
                    "cannot write the {shell} completions into {}",
                    dir.display()
                )
            })?;
        written.push(path);
    }
    Ok(written)
}

/// `cmd`'s page, then its visible subcommands' pages (depth first).
fn man_pages(
    cmd: &Command,
    source: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).source(source);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, source, dir, written)?;
    }
    Ok(())
}

/// `cmd` without its hidden subcommands (clap_complete offers every
/// subcommand; clap cannot remove one, so the root is rebuilt). Its name and
/// version are leaked: clap takes only `'static` strings without its
/// `string` feature, and this runs once per process.
fn visible(cmd: &Command) -> Command {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let mut root = Command::new(leak(cmd.get_name()))
        .disable_help_subcommand(true)
        .args(
            cmd.get_arguments()
                .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
                .cloned(),
        )
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(v) = cmd.get_version() {
        root = root.version(leak(v));
    }
    if let Some(a) = cmd.get_about() {
        root = root.about(a.clone());
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn cli() -> Command {
        Command::new("skewd")
            .version("1.2.3")
            .about("Tells the time")
            .subcommand_required(true)
            .arg(Arg::new("config").long("config").global(true))
            .subcommand(Command::new("run").about("Run the agent"))
            .subcommand(
                Command::new("check-config")
                    .about("Validate a config file")
                    .arg(Arg::new("file")),
            )
            .subcommand(
                Command::new("generate-assets")
                    .hide(true)
                    .arg(Arg::new("dir").required(true)),
            )
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("skewd-assets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_pages_and_completions_without_hidden_commands() {
        let dir = temp_dir("ok").join("nested");
        let written = generate(cli(), &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "skewd.1",
                "skewd-run.1",
                "skewd-check-config.1",
                "skewd.bash",
                "_skewd",
                "skewd.fish"
            ]
        );
        let page = std::fs::read_to_string(dir.join("skewd.1")).unwrap();
        assert!(page.contains(".SH NAME"), "{page}");
        assert!(page.contains("check\\-config"), "{page}");
        let run = std::fs::read_to_string(dir.join("skewd-run.1")).unwrap();
        assert!(run.contains(".TH skewd-run 1  \"skewd 1.2.3\""), "{run}");
        for p in &written {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(!text.contains("generate-assets"), "{}", p.display());
            assert!(!text.contains("generate\\-assets"), "{}", p.display());
        }
        for f in ["skewd.bash", "_skewd", "skewd.fish"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(text.contains("check-config"), "{f}");
            assert!(text.contains("config"), "{f}");
        }
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_bad_directory_is_an_error_not_a_panic() {
        let base = temp_dir("bad");
        std::fs::create_dir_all(&base).unwrap();
        let file = base.join("a-file");
        std::fs::write(&file, "").unwrap();
        for dir in [file.clone(), file.join("below")] {
            let e = generate(cli(), &dir).unwrap_err();
            assert!(
                format!("{e:#}").contains(&*file.display().to_string()),
                "{e:#}"
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
