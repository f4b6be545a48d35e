//! `tracevault eval detect`: run the signature rules over labeled files (the formats in
//! `../shared/evaldata/`) and print per-class recall, false-positive rate and a confusion table.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tv_detect::rules::RuleSet;
use tv_detect::{Signatures, evalset};

#[derive(Subcommand)]
pub enum EvalCmd {
    /// Measure the detection rules on labeled evaluation sets.
    Detect(DetectArgs),
}

#[derive(Args)]
pub struct DetectArgs {
    /// The evaluation data directory (holding crs-regression/, payloadsallthethings/,
    /// libinjection/, sqlglot-benign-sql/; missing sets are skipped with a note)
    #[arg(long, default_value = "../shared/evaldata")]
    evaldata: PathBuf,
    /// Also load the Sigma rules under this directory
    #[arg(long)]
    rules_dir: Option<PathBuf>,
    /// Leave the built-in rule pack out (measure only --rules-dir)
    #[arg(long)]
    no_builtin: bool,
    /// Print one row per test file / category as well
    #[arg(long)]
    per_group: bool,
    /// CRS rule-id prefixes to include
    #[arg(long, value_delimiter = ',', default_value = "930,931,932,941,942")]
    crs: Vec<String>,
}

pub fn run(cmd: EvalCmd) -> anyhow::Result<()> {
    let EvalCmd::Detect(a) = cmd;
    let mut rules = if a.no_builtin {
        RuleSet::empty()
    } else {
        RuleSet::builtin()
    };
    if let Some(dir) = &a.rules_dir {
        rules
            .add_dir(dir)
            .with_context(|| format!("reading rules from {}", dir.display()))?;
    }
    for u in &rules.unsupported {
        eprintln!(
            "unsupported: {} {}: {}",
            u.source,
            u.title.as_deref().unwrap_or(""),
            u.reason
        );
    }
    eprintln!(
        "{} rules loaded, {} unsupported",
        rules.rules().len(),
        rules.unsupported.len()
    );
    if !a.evaldata.is_dir() {
        bail!(
            "evaluation data directory {} does not exist (give --evaldata)",
            a.evaldata.display()
        );
    }
    let mut cases = Vec::new();
    let d = &a.evaldata;
    let prefixes: Vec<&str> = a.crs.iter().map(String::as_str).collect();
    let mut note = |name: &str, r: std::io::Result<Vec<evalset::Case>>| match r {
        Ok(c) => cases.extend(c),
        Err(e) => eprintln!("skipped {name}: {e}"),
    };
    note(
        "crs-regression",
        evalset::crs(&d.join("crs-regression/tests"), &prefixes),
    );
    note(
        "payloadsallthethings",
        evalset::patt(&d.join("payloadsallthethings")).map(|(c, skipped)| {
            for s in skipped {
                eprintln!("skipped {s}");
            }
            c
        }),
    );
    note(
        "libinjection",
        evalset::libinjection_benign(&d.join("libinjection")),
    );
    note(
        "sqlglot-benign-sql",
        evalset::sqlglot_benign(&d.join("sqlglot-benign-sql")),
    );
    note(
        "presidio-research",
        evalset::presidio_benign(&d.join("presidio-research")),
    );
    cases.extend(evalset::common_params_benign());
    cases.extend(evalset::ordinary_requests_benign());
    if cases.is_empty() {
        bail!("no labeled cases found under {}", d.display());
    }
    let started = std::time::Instant::now();
    let report = evalset::run(&Signatures::new(rules), &cases);
    let secs = started.elapsed().as_secs_f64();
    print!("{}", report.render(a.per_group));
    println!(
        "\n{} cases in {:.2} s ({:.0} cases/s)",
        cases.len(),
        secs,
        cases.len() as f64 / secs
    );
    Ok(())
}
