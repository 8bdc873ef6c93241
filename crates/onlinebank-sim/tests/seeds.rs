//! The simulator's own checks: a seed replays byte for byte, in this process and in a fresh one;
//! every injected bug is found; the seeds that once failed pass.

use onlinebank_core::ambient::Injection;
use onlinebank_sim::{run, Config};

fn traced(seed: u64, injections: &[Injection]) -> String {
    let config = Config {
        trace: true,
        injections: injections.iter().copied().collect(),
    };
    let mut lines = run(seed, &config).trace.join("\n");
    lines.push('\n');
    lines
}

#[test]
fn a_seed_gives_the_same_trace_in_this_process_and_in_a_fresh_one() {
    for seed in [1, 73, 328, 4_000_000_007] {
        let first = traced(seed, &[]);
        assert!(first.lines().count() > 50, "seed {seed}: a short trace");
        assert_eq!(first, traced(seed, &[]), "seed {seed} replayed differently");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_onlinebank-sim"))
            .args(["--seed", &seed.to_string(), "--trace"])
            .output()
            .unwrap();
        assert!(child.status.success(), "seed {seed}: {child:?}");
        assert_eq!(
            String::from_utf8(child.stdout).unwrap(),
            first,
            "seed {seed} in a fresh process"
        );
    }
    let injected = traced(2, &[Injection::CompensationTwice]);
    assert_eq!(injected, traced(2, &[Injection::CompensationTwice]));
}

#[test]
fn every_injected_bug_is_found_within_500_seeds() {
    for injection in Injection::ALL {
        let config = Config {
            trace: false,
            injections: [injection].into(),
        };
        let found = (0..500).find(|seed| run(*seed, &config).violation.is_some());
        assert!(
            found.is_some(),
            "{} was not found in 500 seeds",
            injection.name()
        );
    }
}

#[test]
fn the_seeds_that_once_failed_and_a_few_fresh_ones_pass() {
    let listed = include_str!("../seeds.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.trim().parse::<u64>().unwrap());
    for seed in listed.chain(1_000..1_020) {
        let report = run(seed, &Config::default());
        assert!(
            report.violation.is_none(),
            "seed {seed}: {:?}",
            report.violation
        );
    }
}

/// Iteration order is the one thing a seed cannot fix: the simulator keeps to ordered maps.
#[test]
fn the_simulator_iterates_no_hash_map() {
    let sources = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src")).unwrap();
    for source in sources {
        let path = source.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("HashMap") && !text.contains("HashSet"),
            "{} uses a hash map",
            path.display()
        );
    }
}
