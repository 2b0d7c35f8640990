//! allstop side by side with what a user would otherwise write or pick.
//!
//! ```text
//! cargo bench -p allstop-benches            # everything (about 10 minutes)
//! cargo bench -p allstop-benches -- --quick # fewer rounds
//! cargo bench -p allstop-benches -- --only group|http|allocations|idle|drain|profile
//! ```
//!
//! Every measurement runs in a process of its own (this binary, re-run with
//! `--group-child` or `--server`), and the implementations take turns round
//! by round, so machine drift spreads over all of them. Tables of medians
//! and ratios go to stdout, in Markdown.

mod alloc;
mod group;
mod http;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--group-child") {
        let name = &args[i + 1];
        let n: usize = args[i + 2].parse().unwrap();
        let sample = group::measure(name, n);
        println!(
            "{} {} {}",
            sample.spawn.as_nanos(),
            sample.stop.as_nanos(),
            sample.bytes_per_member
        );
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--server") {
        if std::env::var_os("ALLSTOP_COUNT_ALLOCATIONS").is_some() {
            alloc::start();
        }
        http::serve(&args[i + 1], args[i + 2].parse().unwrap());
        println!("allocations {}", alloc::count());
        return;
    }

    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].as_str());
    let wants = |part: &str| only.is_none_or(|only| only == part);

    println!("# allstop benchmarks\n");
    println!(
        "`cargo bench -p allstop-benches{}`\n",
        if quick { " -- --quick" } else { "" }
    );
    if wants("group") {
        group_table(if quick { 3 } else { 7 });
    }
    if wants("profile") {
        profile_table(3, false);
        profile_table(3, true);
    }
    if (wants("http") || wants("drain")) && !have_wrk() {
        println!("_wrk is not installed and could not be: HTTP benchmarks skipped._");
        return;
    }
    if wants("http") {
        http_table(if quick { 1 } else { 5 }, if quick { 3 } else { 5 });
    }
    if wants("allocations") {
        allocations_table();
    }
    if wants("idle") {
        idle_table(if quick { 1 } else { 3 });
    }
    if wants("drain") {
        drain_table(if quick { 1 } else { 3 });
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[derive(Default)]
struct Runs {
    spawn: Vec<f64>,
    stop: Vec<f64>,
    total: Vec<f64>,
    bytes: Vec<f64>,
}

fn group_table(rounds: usize) {
    const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
    let exe = std::env::current_exe().unwrap();
    let mut runs: HashMap<(&str, usize), Runs> = HashMap::new();
    for round in 0..rounds {
        for n in SIZES {
            // Take turns, starting one further each round.
            for k in 0..group::IMPLS.len() {
                let name = group::IMPLS[(k + round) % group::IMPLS.len()];
                let output = Command::new(&exe)
                    .args(["--group-child", name, &n.to_string()])
                    .env("SMOL_THREADS", "2")
                    .output()
                    .unwrap();
                assert!(output.status.success(), "{name} at {n} failed");
                let line = String::from_utf8_lossy(&output.stdout);
                let fields: Vec<f64> = line
                    .split_whitespace()
                    .map(|f| f.parse().unwrap())
                    .collect();
                let entry = runs.entry((name, n)).or_default();
                let per = |ns: f64| ns / n as f64 / 1000.0;
                entry.spawn.push(per(fields[0]));
                entry.stop.push(per(fields[1]));
                entry.total.push(per(fields[0] + fields[1]));
                entry.bytes.push(fields[2]);
            }
        }
        eprintln!("group: round {} of {rounds} done", round + 1);
    }

    println!("## Group of N idle members: spawn all, then stop (median of {rounds} runs)\n");
    println!("Per member. *spawn*: from the first spawn until the last member has started; *stop*: from the first member's exit until every result is collected; *bytes*: peak RSS growth. Ratios against the hand-written floor of the same runtime (lower is better).\n");
    println!("| implementation | N | spawn µs | stop µs | total µs | bytes | time ÷ floor | bytes ÷ floor |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for n in SIZES {
        for name in group::IMPLS {
            let r = &runs[&(name, n)];
            let (spawn, stop, total, bytes) = (
                median(r.spawn.clone()),
                median(r.stop.clone()),
                median(r.total.clone()),
                median(r.bytes.clone()),
            );
            let (time_ratio, bytes_ratio) = match group::floor_of(name) {
                Some(floor) => {
                    let f = &runs[&(floor, n)];
                    (
                        format!("{:.2}×", total / median(f.total.clone())),
                        format!("{:.2}×", bytes / median(f.bytes.clone()).max(1.0)),
                    )
                }
                None => ("floor".into(), "floor".into()),
            };
            println!(
                "| {name} | {n} | {spawn:.3} | {stop:.3} | {total:.3} | {bytes:.0} | {time_ratio} | {bytes_ratio} |"
            );
        }
    }
    println!();
}

fn have_wrk() -> bool {
    let found = || Command::new("wrk").arg("--version").output().is_ok();
    if found() {
        return true;
    }
    eprintln!("installing wrk (Debian's package)…");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .status();
    if !found() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "wrk"])
            .status();
    }
    found()
}

fn profile_table(runs: usize, busy: bool) {
    let samples: Vec<[http::Memory; 4]> = (0..runs).map(|_| http::profile_memory(busy)).collect();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let med = |pick: &dyn Fn(&[http::Memory; 4]) -> u64| {
        median(samples.iter().map(|s| pick(s) as f64).collect()) as u64
    };
    let what = if busy {
        "with a thread burning a core (so the profile has samples to name)"
    } else {
        "otherwise idle (no samples)"
    };
    println!(
        "## The debug server's memory around a 1 s CPU profile, {what} (median of {runs} runs)\n"
    );
    println!("RSS from `/proc/PID/status` of a process serving only the debug server (release build); *peak* is `VmHWM`. The target: a profile costs under 32 MiB above the process before it, and gives it back.\n");
    println!("| moment | RSS MiB | anonymous MiB | above before MiB |");
    println!("|---|---:|---:|---:|");
    let idle = med(&|s| s[0].rss);
    for (moment, rss, anon) in [
        ("before", med(&|s| s[0].rss), Some(med(&|s| s[0].anon))),
        ("peak during the profile", med(&|s| s[1].rss), None),
        (
            "after one profile",
            med(&|s| s[2].rss),
            Some(med(&|s| s[2].anon)),
        ),
        (
            "after three profiles",
            med(&|s| s[3].rss),
            Some(med(&|s| s[3].anon)),
        ),
    ] {
        let anon = anon.map_or("—".to_owned(), |kib| format!("{:.1}", mib(kib)));
        println!(
            "| {moment} | {:.1} | {anon} | {:.1} |",
            mib(rss),
            mib(rss.saturating_sub(idle))
        );
    }
    println!();
}

fn http_table(rounds: usize, secs: u64) {
    let mut rates: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        for k in 0..http::SERVERS.len() {
            let kind = http::SERVERS[(k + round) % http::SERVERS.len()];
            let load = http::throughput(kind, secs);
            rates.entry(kind).or_default().push(load.requests_per_sec);
        }
        eprintln!("http: round {} of {rounds} done", round + 1);
    }
    let rate = |kind: &str| median(rates[kind].clone());
    // The ratio of each round's two runs, then their median: a run's rate
    // drifts by several per cent with what else the machine does, and the
    // two runs of a round are a minute apart at most.
    let ratio = |kind: &str, to: &str| {
        median(
            (rates[kind].iter().zip(&rates[to]))
                .map(|(ours, theirs)| ours / theirs)
                .collect(),
        )
    };
    println!("## HTTP hello, `wrk -t1 -c32 -d{secs}s` ({rounds} rounds)\n");
    println!("wrk and the server share the machine's cores; the servers have 2 worker threads each (tokio workers, `SMOL_THREADS=2`). *requests/s*: the median of the rounds; the ratios: the median of each round's ratio.\n");
    println!("| server | requests/s | ÷ bare server, same runtime | ÷ allstop on tokio |");
    println!("|---|---:|---:|---:|");
    for kind in http::SERVERS {
        let vs_bare = http::baseline_of(kind)
            .map(|bare| format!("{:.2}×", ratio(kind, bare)))
            .unwrap_or_else(|| "baseline".into());
        println!(
            "| {kind} | {:.0} | {vs_bare} | {:.2}× |",
            rate(kind),
            ratio(kind, "allstop on tokio")
        );
    }
    println!();
}

fn allocations_table() {
    println!("## Allocations per request, one keep-alive connection (counting allocator)\n");
    println!("The servers' allocations over {} sequential `GET /` on one connection, less those over {}, divided by the difference: what each further request costs, the connection's own costs left out. Deterministic: one run.\n", http::MANY, http::FEW);
    println!("| server | allocations per request | ÷ bare server, same runtime |");
    println!("|---|---:|---:|");
    let counts: HashMap<&str, f64> = http::SERVERS
        .iter()
        .map(|&kind| (kind, http::allocations_per_request(kind)))
        .collect();
    for kind in http::SERVERS {
        let ours = counts[kind];
        let vs_bare = http::baseline_of(kind)
            // Rounded first, and `+ 0.0` turns a rounded -0.0 into 0.0.
            .map(|bare| {
                format!(
                    "{:+.1}",
                    ((ours - counts[bare]) * 10.0).round() / 10.0 + 0.0
                )
            })
            .unwrap_or_else(|| "baseline".into());
        println!("| {kind} | {ours:.1} | {vs_bare} |");
    }
    println!();
}

fn idle_table(rounds: usize) {
    let mut results: HashMap<&str, Vec<(f64, Duration)>> = HashMap::new();
    for round in 0..rounds {
        for k in 0..http::IDLERS.len() {
            let kind = http::IDLERS[(k + round) % http::IDLERS.len()];
            results
                .entry(kind)
                .or_default()
                .push(http::idle_connections(kind));
        }
        eprintln!("idle: round {} of {rounds} done", round + 1);
    }
    println!(
        "## {} idle keep-alive connections (median of {rounds} runs)\n",
        http::IDLE
    );
    println!("Each connection has had one `GET /` answered and stays open, silent. *memory*: the server's resident memory growth per connection (`VmRSS`); *stop → exit*: from SIGTERM to the end of the server's drain with them all open (the bare smol-hyper server has no drain).\n");
    println!("| server | KiB per connection | ÷ bare server | stop → exit |");
    println!("|---|---:|---:|---:|");
    let kib = |kind: &str| median(results[kind].iter().map(|r| r.0).collect());
    for kind in http::IDLERS {
        let ours = kib(kind);
        let vs_bare = http::baseline_of(kind)
            .map(|bare| format!("{:.2}×", ours / kib(bare)))
            .unwrap_or_else(|| "baseline".into());
        let stop = median(
            results[kind]
                .iter()
                .map(|r| r.1.as_secs_f64() * 1000.0)
                .collect(),
        );
        println!("| {kind} | {ours:.1} | {vs_bare} | {stop:.1} ms |");
    }
    println!();
}

fn drain_table(rounds: usize) {
    let mut results: HashMap<&str, Vec<(http::Load, Duration)>> = HashMap::new();
    for round in 0..rounds {
        for k in 0..http::DRAINERS.len() {
            let kind = http::DRAINERS[(k + round) % http::DRAINERS.len()];
            let result = http::drain(kind, 4, Duration::from_secs(2));
            results.entry(kind).or_default().push(result);
        }
        eprintln!("drain: round {} of {rounds} done", round + 1);
    }
    println!("## Drain under load: `wrk -t1 -c32 -d4s`, SIGTERM to the server after 2 s ({rounds} runs)\n");
    println!("*lost*: wrk read errors, requests sent on a connection the server then closed without answering. Connect errors after the stop are expected (the port is closed) and not losses.\n");
    println!("| server | lost (per run) | write errors | non-2xx | stop → exit (median) |");
    println!("|---|---|---|---|---:|");
    for kind in http::DRAINERS {
        let runs = &results[kind];
        let lost: Vec<String> = runs
            .iter()
            .map(|(l, _)| l.read_errors.to_string())
            .collect();
        let writes: Vec<String> = runs
            .iter()
            .map(|(l, _)| l.write_errors.to_string())
            .collect();
        let non_2xx: Vec<String> = runs.iter().map(|(l, _)| l.non_2xx.to_string()).collect();
        let exit = median(runs.iter().map(|(_, d)| d.as_secs_f64() * 1000.0).collect());
        let name = if kind == "bare hyper-util on tokio" {
            "hyper-util `GracefulShutdown` on tokio"
        } else {
            kind
        };
        println!(
            "| {name} | {} | {} | {} | {exit:.2} ms |",
            lost.join(", "),
            writes.join(", "),
            non_2xx.join(", ")
        );
    }
    println!();
}
