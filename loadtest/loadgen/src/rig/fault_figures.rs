//! `loadgen rig fault-figures --answers FILE --fault NAME=START_MS,END_MS ...`: what each
//! entry point answered during each fault, from the answers `loadgen soak --answers`
//! wrote. A fault runs from START (the database went) until every entry point has
//! answered 2xx again after END (the database is back); per entry point: answers 2xx
//! (a socket: admitted), of which while no server took writes (START to END: only
//! requests already done with the database when it went), non-2xx, 5xx among those,
//! 5xx other than 503 (a dishonest answer), no answer at all, and how long after END
//! its first 2xx came. One JSON object per fault, on a line of its own.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::answers::{self, Answer, Entry};

#[derive(clap::Args)]
pub struct Args {
    /// The file `loadgen soak --answers` wrote.
    #[arg(long)]
    answers: PathBuf,
    /// NAME=START_MS,END_MS: a fault's name, when it began and when the database was
    /// back (Unix milliseconds); repeated, in order.
    #[arg(long = "fault", required = true)]
    faults: Vec<String>,
}

struct Fault {
    name: String,
    start_ms: u64,
    end_ms: u64,
}

fn parse_fault(text: &str) -> anyhow::Result<Fault> {
    let (name, times) = text
        .split_once('=')
        .context("a fault is NAME=START_MS,END_MS")?;
    let (start, end) = times
        .split_once(',')
        .context("a fault is NAME=START_MS,END_MS")?;
    let fault = Fault {
        name: name.to_owned(),
        start_ms: start.trim().parse().context("START_MS")?,
        end_ms: end.trim().parse().context("END_MS")?,
    };
    anyhow::ensure!(
        fault.start_ms <= fault.end_ms,
        "{text}: it ends before it starts"
    );
    Ok(fault)
}

const ENTRIES: [(Entry, &str); 4] = [
    (Entry::Webhook, "webhook"),
    (Entry::Send, "send"),
    (Entry::Connect, "connect"),
    (Entry::Order, "order"),
];

/// The figures of one fault; `until_ms` bounds the search for recovery (the next
/// fault's start, or the end of the load).
fn figures(answers: &[Answer], fault: &Fault, until_ms: u64) -> Value {
    let after_end = |entry: Entry| {
        answers
            .iter()
            .filter(|a| a.entry == entry && a.ok() && a.at_ms >= fault.end_ms && a.at_ms < until_ms)
            .map(|a| a.at_ms)
            .min()
    };
    let backs: Vec<Option<u64>> = ENTRIES.iter().map(|(e, _)| after_end(*e)).collect();
    // Until every entry point that was used answered 2xx again (or the bound).
    let used = |entry: Entry| answers.iter().any(|a| a.entry == entry);
    let recovered_ms = ENTRIES
        .iter()
        .zip(&backs)
        .filter(|((e, _), _)| used(*e))
        .map(|(_, back)| back.unwrap_or(until_ms))
        .max()
        .unwrap_or(fault.end_ms)
        .max(fault.end_ms);
    let mut entries = Map::new();
    for ((entry, name), back) in ENTRIES.iter().zip(&backs) {
        let during: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.entry == *entry && a.at_ms >= fault.start_ms && a.at_ms <= recovered_ms)
            .collect();
        let count = |f: &dyn Fn(&Answer) -> bool| during.iter().filter(|a| f(a)).count();
        entries.insert(
            (*name).to_owned(),
            json!({
                "2xx": count(&|a| a.ok()),
                "2xx_while_away": count(&|a| a.ok() && a.at_ms < fault.end_ms),
                "non_2xx": count(&|a| !a.ok() && a.status != 0),
                "5xx": count(&|a| (500..600).contains(&a.status)),
                "5xx_not_503": count(&|a| (500..600).contains(&a.status) && a.status != 503),
                "no_answer": count(&|a| a.status == 0),
                "back_after_s": back.map(|t| secs(t - fault.end_ms)),
            }),
        );
    }
    json!({
        "fault": fault.name,
        "down_s": secs(fault.end_ms - fault.start_ms),
        "recovered_after_s": secs(recovered_ms - fault.end_ms),
        "entries": entries,
    })
}

fn secs(ms: u64) -> f64 {
    (ms as f64 / 100.0).round() / 10.0
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let answers = answers::read(&args.answers)?;
    let faults: Vec<Fault> = args
        .faults
        .iter()
        .map(|f| parse_fault(f))
        .collect::<anyhow::Result<_>>()?;
    let last = answers.iter().map(|a| a.at_ms + 1).max().unwrap_or(0);
    for (i, fault) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map_or(last, |next| next.start_ms);
        println!("{}", figures(&answers, fault, until));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(at_ms: u64, entry: Entry, status: u16) -> Answer {
        Answer {
            at_ms,
            entry,
            status,
            out_trade_no: None,
        }
    }

    #[test]
    fn a_fault_lasts_until_every_entry_point_answers_2xx_again() {
        let answers = vec![
            answer(500, Entry::Send, 202),
            answer(1_100, Entry::Send, 503),
            answer(1_200, Entry::Webhook, 503),
            answer(1_300, Entry::Connect, 503),
            answer(1_400, Entry::Send, 500),
            answer(1_500, Entry::Webhook, 0),
            answer(2_100, Entry::Send, 202),
            answer(2_200, Entry::Webhook, 503),
            answer(2_600, Entry::Connect, 101),
            answer(3_000, Entry::Webhook, 204),
            answer(3_500, Entry::Send, 503),
        ];
        let fault = parse_fault("stop=1000,2000").unwrap();
        let f = figures(&answers, &fault, 10_000);
        assert_eq!(f["down_s"], 1.0);
        assert_eq!(f["recovered_after_s"], 1.0);
        let send = &f["entries"]["send"];
        assert_eq!(
            (send["2xx"].as_u64(), send["non_2xx"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(send["5xx_not_503"], 1);
        assert_eq!(send["2xx_while_away"], 0);
        assert_eq!(send["back_after_s"], 0.1);
        let webhook = &f["entries"]["webhook"];
        assert_eq!(webhook["non_2xx"], 2);
        assert_eq!(webhook["no_answer"], 1);
        assert_eq!(webhook["back_after_s"], 1.0);
        assert_eq!(f["entries"]["connect"]["back_after_s"], 0.6);
        // No order was placed at all: it does not hold the recovery back.
        assert_eq!(f["entries"]["order"]["back_after_s"], Value::Null);
        assert!(parse_fault("stop=2000,1000").is_err());
        assert!(parse_fault("stop").is_err());
    }
}
