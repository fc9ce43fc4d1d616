//! `loadgen rig soak-verdict FILE`: the verdict of `loadtest/soak.sh` on its samples.
//! FILE holds one flat JSON object a minute (`minute` 0 is taken before the load
//! starts); every numeric field but `minute` and the load's totals (`load_*`) is a
//! series. A series levels off when the mean of the last third of the loaded samples
//! is at most the mean of the middle third plus `--tolerance-pct` of it plus a slack
//! of its kind (a few file descriptors, tasks, MiB: the noise of a steady load); one
//! that does not fails the run. Open files and tasks follow the sockets a replica
//! holds, which the clients spread at random: they are judged added up over the
//! replicas (`all_fds`, `all_tasks`), each replica's own reported beside. What grows by design does not fail it: tables (orders,
//! payments, the outbox, receipts), and in Redis the ids users acked, kept a day (so
//! Redis's used memory grows with them for a day: what else it holds, `redis_other_bytes`,
//! is judged); their growth is reported per operation (per order paid, per
//! notification received or acked). Prints a table on stderr and the verdict as one
//! JSON line on stdout; exits non-zero on a failed series.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::{json, Map, Value};

#[derive(clap::Args)]
pub struct Args {
    /// The samples, one JSON object a line (lines with a `verdict` are skipped).
    file: std::path::PathBuf,
    /// Growth allowed from the middle third's mean to the last third's, in percent.
    #[arg(long, default_value_t = 10.0)]
    tolerance_pct: f64,
}

/// Series that grow with the work done, and the operation their growth is counted by.
const BY_DESIGN: &[(&str, &str)] = &[
    ("table_orders", "load_paid"),
    ("table_order_items", "load_paid"),
    ("table_payments", "load_paid"),
    ("table_order_recommendations", "load_paid"),
    ("table_outbox", "load_paid"),
    ("table_receipt_batches", "load_received"),
    ("table_receipt_orders", "load_paid"),
    // Acked ids, kept a day (src/engine/keys.rs): a day's acks at most.
    ("redis_acked_ids", "load_acked"),
    ("redis_ids_bytes", "load_acked"),
    ("redis_used_memory", "load_acked"),
];

/// The absolute slack of a series, by its name: what a steady load moves it by.
fn slack(name: &str) -> f64 {
    const MIB: f64 = 1024.0 * 1024.0;
    if name.ends_with("rss_bytes") {
        8.0 * MIB
    } else if name.ends_with("_fds") {
        16.0
    } else if name.ends_with("_tasks") {
        64.0
    } else if name.starts_with("redis_") && (name.ends_with("_bytes") || name.ends_with("memory")) {
        2.0 * MIB
    } else if name.starts_with("redis_") {
        100.0
    } else if name.starts_with("table_") {
        512.0 * 1024.0
    } else {
        // Backlogs: a moment's work in flight.
        50.0
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let samples: Vec<Map<String, Value>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str::<Map<String, Value>>)
        .collect::<Result<Vec<_>, _>>()
        .context("a sample is not a JSON object")?
        .into_iter()
        .filter(|s| !s.contains_key("verdict"))
        .collect();
    anyhow::ensure!(samples.len() >= 3, "too few samples ({})", samples.len());
    // Every numeric field, as a series over the samples (missing: skipped).
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for s in &samples {
        let minute = s.get("minute").and_then(Value::as_i64).unwrap_or(0);
        for (k, v) in s {
            if let (Some(x), false) = (v.as_f64(), k == "minute") {
                series.entry(k.clone()).or_default().push((minute, x));
            }
        }
    }
    // Open files and tasks of every replica (`a_fds`, `b_fds`, ...), added up per minute.
    for kind in ["fds", "tasks"] {
        let mut sum: BTreeMap<i64, f64> = BTreeMap::new();
        for (name, points) in &series {
            if name.len() == kind.len() + 2 && name.ends_with(&format!("_{kind}")) {
                for (minute, x) in points {
                    *sum.entry(*minute).or_default() += x;
                }
            }
        }
        if !sum.is_empty() {
            series.insert(format!("all_{kind}"), sum.into_iter().collect());
        }
    }
    let last = |name: &str| -> f64 {
        series
            .get(name)
            .and_then(|v| v.last())
            .map(|p| p.1)
            .unwrap_or(0.0)
    };
    let mut judged = Map::new();
    let mut per_operation = Map::new();
    let mut failed = Vec::new();
    eprintln!(
        "{:<34} {:>14} {:>14} {:>14}  verdict",
        "series", "start", "middle", "end"
    );
    for (name, points) in &series {
        if name.starts_with("load_") {
            continue;
        }
        let first = points.first().map(|p| p.1).unwrap_or(0.0);
        let end = points.last().map(|p| p.1).unwrap_or(0.0);
        let middle = points[points.len() / 2].1;
        if let Some((_, per)) = BY_DESIGN.iter().find(|(t, _)| *t == name) {
            let ops = last(per) - samples[0].get(*per).and_then(Value::as_f64).unwrap_or(0.0);
            let each = if ops > 0.0 { (end - first) / ops } else { 0.0 };
            let unit = per.trim_start_matches("load_");
            eprintln!(
                "{name:<34} {first:>14} {middle:>14} {end:>14}  by design: {each:.1} per {unit}"
            );
            per_operation.insert(
                name.clone(),
                json!({"start": first, "middle": middle, "end": end,
                       "per": unit, "operations": ops, "per_operation": (each * 10.0).round() / 10.0}),
            );
            continue;
        }
        if name.len() > 2
            && !name.starts_with("all_")
            && (name.ends_with("_fds") || name.ends_with("_tasks"))
            && name.as_bytes()[1] == b'_'
        {
            let kind = &name[2..];
            eprintln!("{name:<34} {first:>14} {middle:>14} {end:>14}  judged in all_{kind}");
            judged.insert(
                name.clone(),
                json!({"start": first, "middle": middle, "end": end,
                       "verdict": format!("judged in all_{kind}")}),
            );
            continue;
        }
        // The loaded samples (minute 1 on), in thirds.
        let loaded: Vec<f64> = points.iter().filter(|p| p.0 >= 1).map(|p| p.1).collect();
        let third = (loaded.len() / 3).max(1);
        let tail = mean(&loaded[loaded.len().saturating_sub(third)..]);
        let mid = mean(
            &loaded[loaded.len().saturating_sub(2 * third)..loaded.len().saturating_sub(third)],
        );
        let allowed = mid * (1.0 + args.tolerance_pct / 100.0) + slack(name);
        let verdict = if tail <= mid {
            "flat"
        } else if tail <= allowed {
            "levelled off"
        } else {
            failed.push(name.clone());
            "GROWS"
        };
        let growth_pct = if mid > 0.0 {
            (tail - mid) / mid * 100.0
        } else {
            0.0
        };
        eprintln!(
            "{name:<34} {first:>14} {middle:>14} {end:>14}  {verdict} (last third {growth_pct:+.1}% on the middle's mean)"
        );
        judged.insert(
            name.clone(),
            json!({"start": first, "middle": middle, "end": end,
                   "middle_third_mean": mid.round(), "last_third_mean": tail.round(),
                   "growth_pct": (growth_pct * 10.0).round() / 10.0,
                   "allowed": allowed.round(), "verdict": verdict}),
        );
    }
    let pass = failed.is_empty();
    println!(
        "{}",
        json!({"verdict": if pass { "pass" } else { "fail" }, "grows": failed,
               "tolerance_pct": args.tolerance_pct, "minutes": samples.len() - 1,
               "series": judged, "per_operation": per_operation})
    );
    anyhow::ensure!(pass, "growth that did not level off: {}", failed.join(", "));
    Ok(())
}
