//! Side channels between private runs and what a submitter can see, tried as an attacker
//! would, against the real server and Docker engine: each must be closed.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use holdout::pb;
use tonic::Code;

/// 16 secret bits, eight of them set, in a random order: what a FULL run reads from its
/// private inputs and tries to get out.
fn secret_bits() -> String {
    let mut bits: Vec<char> = "1111111100000000".chars().collect();
    let seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut x = seed;
    for i in (1..bits.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bits.swap(i, (x % (i as u64 + 1)) as usize);
    }
    bits.into_iter().collect()
}

/// A data folder whose private inputs hold the secret; the sample does not.
fn secret_data(server: &TestServer, name: &str, secret: &str) {
    server.write_data(
        name,
        &[
            ("inputs/secret.txt", secret),
            ("inputs/test.csv", "id,x\nr1,1\nr2,2\nr3,3\nr4,4\n"),
            ("labels.csv", "id,label\nr1,odd\nr2,even\nr3,odd\nr4,even\n"),
            ("sample/inputs/secret.txt", "0000000000000000"),
            ("sample/inputs/test.csv", "id,x\ns1,4\ns2,7\ns3,10\n"),
            ("sample/labels.csv", "id,label\ns1,even\ns2,odd\ns3,even\n"),
        ],
    );
}

/// A busybox challenge on `data` with the given wall time (and room for the kernel's
/// accounting of a few hundred thousand short-lived processes).
fn challenge(id: &str, data: &str, wall_secs: i64) -> pb::Challenge {
    let mut c = parity_challenge(id, data);
    let l = c.limits.as_mut().unwrap();
    l.wall_time = Some(prost_types::Duration {
        seconds: wall_secs,
        nanos: 0,
    });
    l.memory_bytes = 256 << 20;
    c
}

/// One second per secret bit: a 1 burns CPU and forks (`date` in a tight loop), a 0 sleeps.
/// Each slot's start is printed, for the admin who decodes below.
const MODULATE: &str = r#"
for b in $(sed 's/./& /g' /data/secret.txt); do
  s=$(date +%s); echo "slot $s $b"
  if [ "$b" = 1 ]; then while [ "$(date +%s)" -eq "$s" ]; do :; done
  else while [ "$(date +%s)" -eq "$s" ]; do sleep 0.1; done; fi
done
awk -F, 'NR==1{print "id,label"; next}{print $1","(($2%2==0)?"even":"odd")}' /data/test.csv > /output/predictions.csv
"#;

/// Samples the host every second for 18 s: how far a busy loop gets (CPU contention), and
/// what /proc/stat (fork count) and /proc/loadavg show; then answers the sample.
const SAMPLE: &str = r#"
end=$(( $(date +%s) + 18 ))
while [ "$(date +%s)" -lt "$end" ]; do
  s=$(date +%s); i=0
  while [ "$(date +%s)" -eq "$s" ]; do i=$((i+1)); done
  p=$(grep '^processes' /proc/stat 2>/dev/null | cut -d' ' -f2)
  echo "sample $s $i ${p:-none} $(wc -c < /proc/stat 2>/dev/null || echo 0) $(wc -c < /proc/loadavg 2>/dev/null || echo 0)"
done
awk -F, 'NR==1{print "id,label"; next}{print $1","(($2%2==0)?"even":"odd")}' /data/test.csv > /output/predictions.csv
"#;

/// (second, bit) of each slot a FULL run printed.
fn slots(stdout: &str) -> Vec<(i64, char)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("slot ")?.split(' ');
            Some((f.next()?.parse().ok()?, f.next()?.chars().next()?))
        })
        .collect()
}

/// One SMOKE sample: (second, loop count, fork counter, /proc/stat bytes, /proc/loadavg bytes).
type Sample = (i64, u64, Option<u64>, u64, u64);

fn samples(stdout: &str) -> Vec<Sample> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.strip_prefix("sample ")?.split(' ').collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok(),
                f.get(3)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The attacker's decoder: a second is a 1 when the fork counter jumped more than the
/// median jump, or (with /proc/stat unreadable) when the busy loop got less far than the
/// median. Returns how many of the FULL run's slots it got right, of how many it saw.
fn decode(slots: &[(i64, char)], samples: &[Sample]) -> (usize, usize) {
    let forks: Vec<(i64, u64)> = samples
        .windows(2)
        .filter_map(|w| Some((w[1].0, w[1].2?.saturating_sub(w[0].2?))))
        .collect();
    let signal: Vec<(i64, u64, bool)> = if forks.len() > 4 {
        forks.iter().map(|(t, d)| (*t, *d, true)).collect()
    } else {
        samples.iter().map(|s| (s.0, s.1, false)).collect()
    };
    let mut values: Vec<u64> = signal.iter().map(|s| s.1).collect();
    values.sort_unstable();
    let median = values.get(values.len() / 2).copied().unwrap_or(0);
    let mut right = 0;
    let mut seen = 0;
    for (t, bit) in slots {
        if let Some((_, v, high_is_one)) = signal.iter().find(|s| s.0 == *t) {
            seen += 1;
            let one = if *high_is_one {
                *v > median
            } else {
                *v < median
            };
            if one == (*bit == '1') {
                right += 1;
            }
        }
    }
    (right, seen)
}

async fn stdout_of(server: &TestServer, id: &str) -> String {
    let logs = server
        .client(&server.admin)
        .await
        .submissions()
        .get_submission_logs(authed(
            &server.admin,
            pb::GetSubmissionLogsRequest { id: id.into() },
        ))
        .await
        .unwrap()
        .into_inner();
    String::from_utf8_lossy(&logs.stdout).into_owned()
}

fn millis(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("a timestamp");
    t.seconds * 1000 + t.nanos as i64 / 1_000_000
}

/// Runs the attack: a FULL run modulating the host for 16 s, and, once it runs, two SMOKE
/// runs of the same participant sampling it. Returns the FULL run's slots, its end (ms), and
/// each SMOKE run's samples.
async fn modulate_and_sample(server: &TestServer) -> (Vec<(i64, char)>, i64, Vec<Vec<Sample>>) {
    let client = server.client(&server.submitter).await;
    let full_run = client
        .submit(full("leak", "mallory"), tar_gz(&[("run.sh", MODULATE)]))
        .await
        .unwrap();
    while server.get_as(&server.admin, &full_run.id).await.state
        != pb::SubmissionState::Running as i32
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut smokes = Vec::new();
    for _ in 0..2 {
        smokes.push(
            client
                .submit(smoke("leak", "mallory"), tar_gz(&[("run.sh", SAMPLE)]))
                .await
                .unwrap(),
        );
    }
    let mut sampled = Vec::new();
    for s in &smokes {
        let done = client.watch(&s.id, |_| {}).await.unwrap();
        assert_eq!(
            done.state,
            pb::SubmissionState::Succeeded as i32,
            "the SMOKE run completes: {done:?}"
        );
        sampled.push(samples(&stdout_of(server, &s.id).await));
    }
    client.watch(&full_run.id, |_| {}).await.unwrap();
    let exact = server.get_as(&server.admin, &full_run.id).await;
    let slots = slots(&stdout_of(server, &full_run.id).await);
    assert_eq!(slots.len(), 16, "the FULL run modulated every bit");
    (slots, millis(&exact.finished_at), sampled)
}

#[tokio::test]
async fn a_full_run_modulating_the_host_is_not_seen_by_the_participants_smoke_runs() {
    within(300, async {
        // The default settings: time partitioning on.
        let server = spawn_app().await;
        let secret = secret_bits();
        secret_data(&server, "leak", &secret);
        create(&server, challenge("leak", "leak", 60))
            .await
            .unwrap();
        let (slots, full_end, sampled) = modulate_and_sample(&server).await;
        for samples in &sampled {
            assert!(samples.len() >= 10, "{samples:?}");
            // Never at the same time: every sample was taken after the FULL run ended.
            let first = samples[0].0 * 1000;
            assert!(
                first + 1000 >= full_end,
                "a SMOKE sample at {first} while the FULL run went on until {full_end}"
            );
            // And nothing host-wide to read afterwards.
            for s in samples {
                assert_eq!(
                    (s.2, s.3, s.4),
                    (None, 0, 0),
                    "/proc counters are masked: {s:?}"
                );
            }
            let (right, seen) = decode(&slots, samples);
            assert!(right <= 12, "decoded {right} of {seen} bits: not chance");
        }
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn without_time_partitioning_the_same_smoke_runs_do_share_the_host_with_the_full_run() {
    within(300, async {
        // The control: the channel's precondition, which the partition removes, holds here.
        let server = spawn_app_with(|c| c.time_partition = false).await;
        secret_data(&server, "leak", &secret_bits());
        create(&server, challenge("leak", "leak", 60))
            .await
            .unwrap();
        let (slots, full_end, sampled) = modulate_and_sample(&server).await;
        let overlapping = sampled
            .iter()
            .filter(|s| s.first().is_some_and(|x| x.0 * 1000 < full_end - 2000))
            .count();
        assert!(overlapping >= 1, "no SMOKE run overlapped the FULL run");
        for s in &sampled {
            let (right, seen) = decode(&slots, s);
            eprintln!("without partitioning, a SMOKE run decoded {right} of {seen} bits");
        }
    })
    .await
}

/// Picks one of five failures from the first private bit and its own number `k`.
fn verdict_picker(k: u32) -> String {
    format!(
        r#"b=$(head -c1 /data/secret.txt)
case $(( (b + {k}) % 5 )) in
  0) exit 3 ;;
  1) sleep 60 ;;
  2) head -c 300000000 /dev/zero | tail -c 300000000 > /dev/null; sleep 60 ;;
  3) i=0; while true; do dd if=/dev/zero of=/output/f$i bs=16k count=1 2>/dev/null; i=$((i+1)); done ;;
  4) echo "not,a,prediction" > /output/predictions.csv ;;
esac
"#
    )
}

#[tokio::test]
async fn a_verdict_picked_from_private_data_shows_only_as_not_scored_and_is_charged() {
    within(240, async {
        let server = spawn_app().await;
        secret_data(&server, "leak", &secret_bits());
        let mut c = challenge("pick", "leak", 8);
        let l = c.limits.as_mut().unwrap();
        l.memory_bytes = 32 << 20;
        l.scratch_bytes = 256 << 20;
        l.output_bytes = 1 << 20;
        c.quota = Some(pb::Quota {
            full_per_day: 5,
            ..Default::default() // count_failed left unset: true for a new challenge
        });
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;
        let mut ids = Vec::new();
        for k in 0..5 {
            let s = client
                .submit(
                    full("pick", "mallory"),
                    tar_gz(&[("run.sh", &verdict_picker(k))]),
                )
                .await
                .unwrap();
            ids.push(s.id);
        }
        let mut shown = BTreeSet::new();
        let mut exact = BTreeSet::new();
        let mut seen = Vec::new();
        for id in &ids {
            let done = client.watch(id, |_| {}).await.unwrap();
            shown.insert((
                done.state,
                done.verdict,
                done.message.clone(),
                done.scores.len(),
            ));
            let admin = server.get_as(&server.admin, id).await;
            exact.insert(admin.verdict);
            seen.push((admin.verdict, admin.message, admin.usage));
        }
        assert_eq!(
            exact.len(),
            5,
            "the code picked five different verdicts: {seen:?}"
        );
        assert_eq!(shown.len(), 1, "the platform saw them apart: {shown:?}");
        let (state, verdict, _, _) = shown.into_iter().next().unwrap();
        assert_eq!(
            (state, verdict),
            (
                pb::SubmissionState::Failed as i32,
                pb::Verdict::NotScored as i32
            )
        );
        // Every failure was charged: the quota of five is spent.
        let err = client
            .submit(full("pick", "mallory"), tar_gz(&[("run.sh", "exit 0")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    })
    .await
}

/// A constant-time-release challenge: 3 s wall time, 1 s scoring budget.
fn held_challenge(id: &str) -> pb::Challenge {
    let mut c = challenge(id, "leak", 3);
    c.release = Some(pb::ReleasePolicy {
        constant_time_release: true,
        scoring_budget: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    });
    c.limits.as_mut().unwrap().concurrency = 2;
    c
}

/// The code exits after `secs`, with valid predictions.
fn exits_after(secs: f64) -> String {
    format!("sleep {secs}\n{PARITY_RIGHT_LEAK}")
}

const PARITY_RIGHT_LEAK: &str = r#"awk -F, 'NR==1{print "id,label"; next}{print $1","(($2%2==0)?"even":"odd")}' /data/test.csv > /output/predictions.csv
"#;

fn when(seen: &[(i32, SystemTime)], state: pb::SubmissionState) -> SystemTime {
    seen.iter()
        .find(|x| x.0 == state as i32)
        .unwrap_or_else(|| panic!("{state:?} never seen: {seen:?}"))
        .1
}

/// When the server started `s` (its current attempt).
fn started(s: &pb::Submission) -> SystemTime {
    SystemTime::try_from(
        s.started_at
            .unwrap_or_else(|| panic!("never started: {s:?}")),
    )
    .unwrap()
}

/// How long after the server started `s` the moment `at` came. Held releases are measured
/// from there: when a client first sees RUNNING depends on how fast the start was
/// committed on a loaded machine, not on the run.
fn after_start(s: &pb::Submission, at: SystemTime) -> Duration {
    at.duration_since(started(s)).unwrap_or_default()
}

fn close(a: Duration, b: Duration, tolerance: Duration) -> bool {
    a.abs_diff(b) <= tolerance
}

#[tokio::test]
async fn a_run_exiting_early_and_one_exiting_at_its_limit_release_together_and_so_do_their_queues()
{
    within(120, async {
        let server = spawn_app_with(|c| c.concurrency = 2).await;
        secret_data(&server, "leak", &secret_bits());
        create(&server, held_challenge("held")).await.unwrap();
        let client = server.client(&server.submitter).await;
        let early = client
            .submit(full("held", "a"), tar_gz(&[("run.sh", &exits_after(0.05))]))
            .await
            .unwrap();
        let late = client
            .submit(full("held", "b"), tar_gz(&[("run.sh", &exits_after(2.95))]))
            .await
            .unwrap();
        // Probes queued behind them: they start when a slot frees.
        let mut probes = Vec::new();
        for p in ["p1", "p2"] {
            probes.push(
                client
                    .submit(full("held", p), tar_gz(&[("run.sh", &exits_after(0.0))]))
                    .await
                    .unwrap(),
            );
        }
        let watches: Vec<_> = [&early, &late, &probes[0], &probes[1]]
            .into_iter()
            .map(|s| tokio::spawn(timeline_owned(server_handle(&server), s.id.clone())))
            .collect();
        let mut results = Vec::new();
        for w in watches {
            results.push(w.await.unwrap());
        }
        // The late run ends 50 ms inside its limit; on a loaded machine it may cross it: its
        // end is then a TIME_LIMIT_EXCEEDED, released at the very same fixed deadline.
        let ended = |seen: &[(i32, SystemTime)]| {
            seen.iter()
                .find(|x| {
                    [
                        pb::SubmissionState::Succeeded as i32,
                        pb::SubmissionState::Failed as i32,
                    ]
                    .contains(&x.0)
                })
                .unwrap_or_else(|| panic!("never ended: {seen:?}"))
                .1
        };
        assert_eq!(results[0].0.state, pb::SubmissionState::Succeeded as i32);
        let early_end = after_start(&results[0].0, ended(&results[0].1));
        let late_end = after_start(&results[1].0, ended(&results[1].1));
        let tick = Duration::from_millis(400);
        assert!(
            close(early_end, late_end, tick),
            "released {early_end:?} and {late_end:?} after their starts"
        );
        // Not before wall time + budget after the start.
        let deadline = Duration::from_secs(4);
        assert!(early_end >= deadline, "{early_end:?}");
        // Each slot frees at its run's fixed deadline, not when the code exited: the
        // probes start (on the server's clock) 4 s after the runs they waited for.
        let mut runs = [started(&results[0].0), started(&results[1].0)];
        let mut probes = [started(&results[2].0), started(&results[3].0)];
        runs.sort();
        probes.sort();
        for (run, probe) in runs.iter().zip(&probes) {
            let waited = probe.duration_since(*run).unwrap_or_default();
            assert!(
                // The slot must not free early; how soon after the deadline the next run
                // starts is the scheduler's latency, looser on a loaded machine.
                waited >= deadline && waited < deadline + Duration::from_millis(1500),
                "a probe started {waited:?} after the run whose slot it took"
            );
        }
    })
    .await
}

/// What a spawned watch needs: an address and a token (a `TestServer` is not `Send`-shared).
#[derive(Clone)]
struct Handle {
    addr: std::net::SocketAddr,
    token: String,
}

fn server_handle(server: &TestServer) -> Handle {
    Handle {
        addr: server.addr,
        token: server.submitter.clone(),
    }
}

async fn timeline_owned(h: Handle, id: String) -> (pb::Submission, Vec<(i32, SystemTime)>) {
    let client = holdout::cli::Client::connect(&format!("http://{}", h.addr), Some(&h.token))
        .await
        .unwrap();
    let mut seen: Vec<(i32, SystemTime)> = Vec::new();
    let last = client
        .watch(&id, |s| {
            if seen.last().map(|x| x.0) != Some(s.state) {
                seen.push((s.state, SystemTime::now()));
            }
        })
        .await
        .unwrap();
    (last, seen)
}

/// What a submitter's view says, without what identifies the submission.
fn answer(s: &pb::Submission) -> (i32, i32, String, usize, u32) {
    (
        s.state,
        s.verdict,
        s.message.clone(),
        s.scores.len(),
        s.queue_position,
    )
}

#[tokio::test]
async fn a_cancel_answers_the_same_and_releases_at_the_same_moment_whether_the_code_had_finished() {
    within(180, async {
        let server = spawn_app_with(|c| c.concurrency = 2).await;
        secret_data(&server, "leak", &secret_bits());
        create(&server, held_challenge("held")).await.unwrap();
        let client = server.client(&server.submitter).await;
        // Cancel moments, at random within the wall time, for pairs that start together:
        // one whose code exits at once, one whose code runs past the moment.
        let mut x = std::process::id() as u64 | 1;
        for round in 0..2 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let cancel_after = Duration::from_millis(300 + x % 2000);
            let t0 = Instant::now();
            let finished = client
                .submit(
                    full("held", &format!("f{round}")),
                    tar_gz(&[("run.sh", &exits_after(0.0))]),
                )
                .await
                .unwrap();
            let running = client
                .submit(
                    full("held", &format!("r{round}")),
                    tar_gz(&[("run.sh", &exits_after(2.9))]),
                )
                .await
                .unwrap();
            let watches: Vec<_> = [&finished, &running]
                .into_iter()
                .map(|s| tokio::spawn(timeline_owned(server_handle(&server), s.id.clone())))
                .collect();
            tokio::time::sleep_until((t0 + cancel_after).into()).await;
            let mut answers = Vec::new();
            for s in [&finished, &running] {
                let a = client
                    .submissions()
                    .cancel_submission(authed(
                        &server.submitter,
                        pb::CancelSubmissionRequest { id: s.id.clone() },
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                answers.push(answer(&a));
            }
            assert_eq!(answers[0], answers[1], "cancel at {cancel_after:?}");
            assert_eq!(answers[0].0, pb::SubmissionState::Running as i32, "held");
            let mut ends = Vec::new();
            for w in watches {
                let (last, seen) = w.await.unwrap();
                assert_eq!(
                    last.state,
                    pb::SubmissionState::Cancelled as i32,
                    "{last:?}"
                );
                ends.push(after_start(
                    &last,
                    when(&seen, pb::SubmissionState::Cancelled),
                ));
            }
            assert!(
                close(ends[0], ends[1], Duration::from_millis(400)),
                "cancel at {cancel_after:?}: released {ends:?} after their starts"
            );
            assert!(ends[0] >= Duration::from_secs(4), "{ends:?}");
            // The code of the first had finished and been scored: an admin still sees its
            // scores, the platform never.
            let exact = server.get_as(&server.admin, &finished.id).await;
            assert_eq!(exact.verdict, pb::Verdict::Cancelled as i32);
        }
    })
    .await
}

#[tokio::test]
async fn two_platforms_using_one_participant_id_are_two_participants_and_look_alikes_are_refused() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        let mut c = parity_challenge("parity", "parity");
        c.quota = Some(pb::Quota {
            full_per_day: 1,
            ..Default::default()
        });
        create(&server, c).await.unwrap();
        let a = server.client(&server.submitter).await;
        let b = server.client(&server.other).await;
        let good = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let even = tar_gz(&[("run.sh", PARITY_EVEN)]);
        let sa = a.submit(full("parity", "alice"), good).await.unwrap();
        // Platform B's "alice" has a quota of her own...
        let sb = b.submit(full("parity", "alice"), even).await.unwrap();
        a.watch(&sa.id, |_| {}).await.unwrap();
        b.watch(&sb.id, |_| {}).await.unwrap();
        // ...and a row of her own: B cannot displace or merge into A's alice.
        let board = a
            .leaderboards()
            .get_leaderboard(authed(
                &server.submitter,
                pb::GetLeaderboardRequest {
                    challenge_id: "parity".into(),
                    view: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let rows: BTreeSet<(String, String)> = board
            .entries
            .iter()
            .map(|e| (e.platform.clone(), e.participant_id.clone()))
            .collect();
        assert_eq!(
            rows,
            BTreeSet::from([
                ("platform-a".to_owned(), "alice".to_owned()),
                ("platform-b".to_owned(), "alice".to_owned())
            ])
        );
        // Each quota of one is spent separately.
        for (client, _) in [(&a, "a"), (&b, "b")] {
            let err = client
                .submit(full("parity", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::ResourceExhausted);
        }
        // A look-alike id is refused, not a fresh quota.
        for look_alike in ["alice\u{200b}", "al\u{202e}ice", "alice\u{feff}", " alice"] {
            let err = a
                .submit(
                    full("parity", look_alike),
                    tar_gz(&[("run.sh", PARITY_RIGHT)]),
                )
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{look_alike:?}: {err:?}");
            assert!(
                err.message().contains("participant_id"),
                "{}",
                err.message()
            );
        }
    })
    .await
}

#[tokio::test]
async fn the_split_seed_and_the_leakage_estimate_are_for_admins_only() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let get = |token: String| {
            let server = &server;
            async move {
                server
                    .client(&token)
                    .await
                    .challenges()
                    .get_challenge(authed(
                        &token,
                        pb::GetChallengeRequest {
                            id: "parity".into(),
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let submitter = get(server.submitter.clone()).await;
        assert_eq!(submitter.scoring.unwrap().split_seed, 0);
        assert!(submitter.leakage.is_none());
        let admin = get(server.admin.clone()).await;
        assert_eq!(admin.scoring.unwrap().split_seed, 7);
        let leakage = admin.leakage.unwrap();
        // 5 public rows + 1 (accuracy), one "not scored", 20 s of 100 ms moments.
        assert_eq!(
            (
                leakage.score_values,
                leakage.failure_values,
                leakage.time_values
            ),
            (6, 1, 200)
        );
        assert!((leakage.bits_per_submission - (7.0f64 * 200.0).log2()).abs() < 1e-9);
    })
    .await
}

#[tokio::test]
async fn the_ledger_adds_up_the_bits_of_each_participants_released_results() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        for p in ["alice", "alice", "bob"] {
            let s = client
                .submit(full("parity", p), tar_gz(&[("run.sh", PARITY_RIGHT)]))
                .await
                .unwrap();
            client.watch(&s.id, |_| {}).await.unwrap();
        }
        // A SMOKE run releases its logs, not private data: not in the ledger.
        let s = client
            .submit(
                smoke("parity", "alice"),
                tar_gz(&[("run.sh", PARITY_RIGHT)]),
            )
            .await
            .unwrap();
        client.watch(&s.id, |_| {}).await.unwrap();
        let admin = server.client(&server.admin).await;
        let ledger = admin
            .audit()
            .get_leakage(authed(
                &server.admin,
                pb::GetLeakageRequest {
                    challenge_id: "parity".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let per = ledger.estimate.unwrap().bits_per_submission;
        let rows: Vec<(String, u32, f64)> = ledger
            .participants
            .iter()
            .map(|p| (p.participant_id.clone(), p.results, p.bits))
            .collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].0.as_str(), rows[0].1), ("alice", 2));
        assert!((rows[0].2 - 2.0 * per).abs() < 1e-9);
        assert_eq!((rows[1].0.as_str(), rows[1].1), ("bob", 1));
        assert!((ledger.total_bits - 3.0 * per).abs() < 1e-9);
        // Submitters may not read it.
        let err = client
            .audit()
            .get_leakage(authed(
                &server.submitter,
                pb::GetLeakageRequest {
                    challenge_id: "parity".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    })
    .await
}

#[tokio::test]
async fn predictions_that_would_break_a_custom_scorer_are_invalid_and_charged() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        let mut c = parity_challenge("custom", "parity");
        // An organiser's scorer that falls over on a duplicate id, as many would.
        let scorer = r#"awk -F, 'seen[$1]++ { exit 3 }' /predictions/predictions.csv || exit 3; echo '{"acc": 1}' > /output/scores.json"#;
        c.scoring.as_mut().unwrap().scorer = Some(pb::scoring::Scorer::Custom(pb::CustomScorer {
            image: BUSYBOX.into(),
            command: vec!["sh".into(), "-c".into(), scorer.into()],
            primary_metric: "acc".into(),
            greater_is_better: true,
            release_messages: false,
        }));
        c.quota = Some(pb::Quota {
            full_per_day: 1,
            ..Default::default()
        });
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;
        let duplicate = format!("{PARITY_RIGHT}head -2 /output/predictions.csv | tail -1 >> /output/predictions.csv\n");
        let s = client
            .submit(full("custom", "mallory"), tar_gz(&[("run.sh", &duplicate)]))
            .await
            .unwrap();
        let done = client.watch(&s.id, |_| {}).await.unwrap();
        assert_eq!(done.verdict, pb::Verdict::NotScored as i32, "{done:?}");
        let exact = server.get_as(&server.admin, &s.id).await;
        assert_eq!(exact.verdict, pb::Verdict::InvalidPredictions as i32, "{exact:?}");
        assert!(exact.message.contains("duplicate id"), "{}", exact.message);
        // The scorer never ran, so it never crashed: nothing in the admin's scorer logs.
        let logs = server
            .client(&server.admin)
            .await
            .submissions()
            .get_submission_logs(authed(&server.admin, pb::GetSubmissionLogsRequest { id: s.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        assert!(!String::from_utf8_lossy(&logs.stderr).contains("custom scorer"));
        // Charged like any invalid predictions: the quota of one is spent.
        let err = client
            .submit(full("custom", "mallory"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    })
    .await
}
