use crate::config::Config;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

fn snapshot(backends: &str, previous: Option<&Snapshot>, metrics: &Metrics) -> Snapshot {
    let config = Config::parse(&format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nstrategy = \"round_robin\"\nbackends = [{backends}]\n[pool.p.retry]\n"
    ))
    .unwrap();
    Snapshot::build(config, Default::default(), previous, metrics)
}

fn picks(s: &Snapshot, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| s.pools["p"].pick(None, &[]).unwrap().0)
        .collect()
}

#[tokio::test]
async fn round_robin_position_and_retry_budget_survive_a_reload_that_keeps_the_pool() {
    let m = Metrics::default();
    let three = "{ addr = \"10.0.0.1:80\", weight = 3 }, { addr = \"10.0.0.2:80\" }";
    let first = snapshot(three, None, &m);
    // Smooth weighted round robin, 3:1 -> A A B A, again and again.
    assert_eq!(picks(&first, 2), [0, 0]);
    first.pools["p"].budget.deposit(7);
    let second = snapshot(three, Some(&first), &m);
    assert_eq!(picks(&second, 2), [1, 0], "the sequence goes on");
    assert!(std::sync::Arc::ptr_eq(
        &first.pools["p"].budget,
        &second.pools["p"].budget
    ));
    // Other members: a new balancer, from the start of its sequence.
    let changed = snapshot(
        "{ addr = \"10.0.0.1:80\", weight = 3 }, { addr = \"10.0.0.3:80\" }",
        Some(&second),
        &m,
    );
    assert_eq!(picks(&changed, 4), [0, 0, 1, 0]);
}
