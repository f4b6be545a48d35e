//! `tracevault doctor`: grades the deployment that `serve` with the same flags and config
//! would run (see `tv_server::doctor`). Exit 0 when nothing is high or critical, 1 when
//! something is, 2 when the flags or the configuration are wrong.

use std::process::ExitCode;

use clap::Args;
use tv_server::RawConfig;
use tv_server::doctor::{Facts, Report, grade};

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub serve: crate::ServeArgs,
    /// The grade as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: DoctorArgs) -> ExitCode {
    let cfg = match RawConfig::resolve(&a.serve.raw(), a.serve.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the configuration does not load: {e:#}");
            return ExitCode::from(2);
        }
    };
    let report = grade(&cfg, cfg.redaction.as_ref(), Facts::here());
    if a.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", render(&report, cfg.data_dir.is_dir()));
    }
    if report.fails {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The report for a terminal: each finding with why and how, then the verdict.
pub fn render(r: &Report, exists: bool) -> String {
    let mut out = format!("tracevault doctor: {}\n", r.data_dir);
    if !exists {
        out.push_str(
            "  (the data directory does not exist yet: the first `serve` creates it, mode 0700; its files were not checked)\n",
        );
    }
    for f in &r.findings {
        out.push_str(&format!(
            "\n{:<8}  {}: {}\n          why: {}\n          fix: {}\n          more: {}\n",
            f.severity.name().to_ascii_uppercase(),
            f.id,
            f.title,
            f.why,
            f.fix,
            f.doc
        ));
    }
    let count = |s: &str| r.findings.iter().filter(|f| f.severity.name() == s).count();
    out.push_str(&format!(
        "\n{} checks passed; {} critical, {} high, {} medium, {} low, {} info\n",
        r.passed.len(),
        count("critical"),
        count("high"),
        count("medium"),
        count("low"),
        count("info"),
    ));
    out.push_str(if r.fails {
        "FAIL: fix the high and critical findings above before serving (exit 1)\n"
    } else {
        "OK: nothing high or critical (info is advice for production)\n"
    });
    out
}
