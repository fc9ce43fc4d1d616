//! `loadgen rig field FILE KEY...`: figures from a scenario's output file, whose last
//! line is its result (earlier lines are events such as `{"event":"connected"}`).

use anyhow::Context;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// A file a scenario wrote its stdout to.
    file: std::path::PathBuf,
    /// Keys of the result object; each value is printed on a line of its own.
    #[arg(required = true)]
    keys: Vec<String>,
}

/// The result of a scenario's output: its last non-empty line.
pub fn last_result(text: &str) -> anyhow::Result<Value> {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("no result line")?;
    serde_json::from_str(line).context("the last line is not JSON")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let result = last_result(&text).with_context(|| args.file.display().to_string())?;
    for key in &args.keys {
        match &result[key.as_str()] {
            Value::Null => anyhow::bail!("{}: no {key} in its result", args.file.display()),
            Value::String(s) => println!("{s}"),
            other => println!("{other}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::last_result;

    #[test]
    fn the_result_is_the_last_line() {
        let text = "{\"event\":\"connected\",\"sockets\":2}\n{\"acked_per_s\":12.5}\n\n";
        let result = last_result(text).expect("a result");
        assert_eq!(result["acked_per_s"], 12.5);
        assert!(last_result("").is_err());
        assert!(last_result("not json\n").is_err());
    }
}
