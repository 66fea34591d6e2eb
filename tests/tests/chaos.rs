//! The chaos program's short form (docs/reliability.md): every phase, a few seconds each,
//! at 50 req/s. The target is no failed request that the policy could have saved; the
//! assertions are on counts of failures by cause, and on the faults having bitten (a
//! phase whose fault did nothing would pass without testing anything), never on times.

use outrigger_tests::chaos::{self, Phase, PhaseReport, Settings};

fn report(reports: &[PhaseReport], phase: Phase) -> &PhaseReport {
    reports
        .iter()
        .find(|r| r.phase == phase)
        .expect("every phase ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_load_lose_nothing_the_policy_can_save() {
    let settings = Settings::short();
    let reports = chaos::run(&settings, &Phase::ALL).await;
    println!("{}", chaos::markdown(&reports, &settings));

    for r in &reports {
        assert!(r.tally.sent > 0, "{}: no load", r.phase.name());
        assert!(
            r.met_target(),
            "{}: failures the policy could have saved: {:?}",
            r.phase.name(),
            r.unexplained()
        );
    }
    // The faults bit: the dead or failing instance's requests were retried elsewhere.
    // (A response cut off after its head is explained, not saved: see Phase::explains.)
    for phase in [Phase::KillApp, Phase::KillSidecar, Phase::Flaky503Retried] {
        let r = report(&reports, phase);
        assert!(
            r.caller.retries > 0,
            "{}: nothing was retried",
            phase.name()
        );
    }
    // Under the default policy an app's 503 reaches the caller (it is not retried); about
    // a quarter of the requests meet it at most (the faulted instance is the busiest of
    // three, about half the picks; half of those fail), fewer once the breaker ejects it.
    let flaky = report(&reports, Phase::Flaky503);
    let app_503 = flaky.tally.failed_by("503 (app)");
    assert!(app_503 > 0, "the fault was injected: {}", flaky.brief());
    assert_eq!(flaky.tally.failed(), app_503, "{}", flaky.brief());
    assert!(app_503 <= flaky.tally.sent / 4, "{}", flaky.brief());

    let rotation = report(&reports, Phase::CertificateRotation);
    let fewest = rotation.findings.facts["fewest certificates"];
    assert!(
        fewest >= 3,
        "every sidecar renewed at least twice: {fewest}"
    );
    let churn = report(&reports, Phase::PolicyChurn);
    assert!(
        churn.findings.facts["versions"] >= 2,
        "the rewrites were pushed: {:?}",
        churn.findings.facts
    );
}
