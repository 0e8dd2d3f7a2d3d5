//! How `sixfold-gateway admin rebalance status` shows the job's figures (`GET
//! /admin/rebalance`): a block of lines, or one progress line that a terminal redraws.

use serde_json::Value;

fn bytes(v: &Value) -> String {
    let n = v.as_u64().unwrap_or(0) as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn eta(v: &Value) -> String {
    match v.as_u64() {
        Some(s) => humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
        None => "-".into(),
    }
}

/// The status as a block of `name: value` lines.
pub fn status_text(s: &Value) -> String {
    let rate_limit = match s["rate_limit_bytes_per_sec"].as_u64() {
        Some(0) => "unlimited".to_string(),
        _ => format!("{}/s", bytes(&s["rate_limit_bytes_per_sec"])),
    };
    format!(
        "state:        {}\nmode:         {} (trigger: {})\nparts:        {} done, {} failed, {} skipped of {} planned\nbytes:        {} done, {} failed of {} planned\nin flight:    {} moving, {} recorded\nrate:         {}/s (limit {rate_limit}, {} per node)\neta:          {}\nfill spread:  {:.4} (threshold {})\n",
        s["state"].as_str().unwrap_or("?"),
        s["mode"].as_str().unwrap_or("-"),
        s["trigger"].as_str().unwrap_or("-"),
        s["parts_done"],
        s["parts_failed"],
        s["parts_skipped"],
        s["parts_planned"],
        bytes(&s["bytes_done"]),
        bytes(&s["bytes_failed"]),
        bytes(&s["bytes_planned"]),
        s["moves_in_flight"],
        s["moves_recorded"],
        bytes(&s["rate_bytes_per_sec"]),
        s["concurrency_per_node"],
        eta(&s["eta_secs"]),
        s["fill_spread"].as_f64().unwrap_or(0.0),
        s["threshold"],
    )
}

/// One progress line: a bar of `width` cells over the bytes planned, then the figures.
pub fn progress_line(s: &Value, width: usize) -> String {
    let planned = s["bytes_planned"].as_u64().unwrap_or(0);
    let done = s["bytes_done"].as_u64().unwrap_or(0) + s["bytes_failed"].as_u64().unwrap_or(0);
    let filled = if planned == 0 {
        width
    } else {
        ((done.min(planned) as u128 * width as u128) / planned as u128) as usize
    };
    format!(
        "[{}{}] {} {}/{} parts, {} of {}, {}/s, eta {}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        s["state"].as_str().unwrap_or("?"),
        s["parts_done"],
        s["parts_planned"],
        bytes(&s["bytes_done"]),
        bytes(&s["bytes_planned"]),
        bytes(&s["rate_bytes_per_sec"]),
        eta(&s["eta_secs"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_read_as_a_person_would_say_them() {
        let s = json!({
            "state": "running", "mode": "converge", "trigger": "node_added",
            "parts_planned": 10, "bytes_planned": 10u64 << 20, "parts_done": 5,
            "bytes_done": 5u64 << 20, "parts_failed": 0, "bytes_failed": 0, "parts_skipped": 1,
            "moves_in_flight": 2, "moves_recorded": 3, "rate_bytes_per_sec": 1u64 << 20,
            "eta_secs": 5, "rate_limit_bytes_per_sec": 0, "concurrency_per_node": 2,
            "threshold": 0.05, "fill_spread": 0.2
        });
        let text = status_text(&s);
        assert!(text.contains("state:        running"), "{text}");
        assert!(
            text.contains("5 done, 0 failed, 1 skipped of 10 planned"),
            "{text}"
        );
        assert!(text.contains("5.0 MiB done"), "{text}");
        assert!(text.contains("limit unlimited"), "{text}");
        assert!(text.contains("eta:          5s"), "{text}");
        let line = progress_line(&s, 10);
        assert!(
            line.starts_with("[#####-----] running 5/10 parts"),
            "{line}"
        );
        let idle = json!({"state": "idle", "bytes_planned": 0, "eta_secs": null});
        assert!(progress_line(&idle, 4).starts_with("[####] idle"));
        assert!(status_text(&idle).contains("eta:          -"));
    }
}
