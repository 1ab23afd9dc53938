//! LLM workloads end to end, over loopback: token-exact prompts checked
//! against the Python `tokenizers` package, drawn lengths, Mooncake hash
//! blocks, trace replay (Mooncake, Azure, BurstGPT) and how closely it
//! keeps its schedule, conversations carrying the server's answers,
//! ShareGPT datasets, stages, the warm-up's rows, and every bad input
//! refused before a request. The simulator (stub-server) shows what
//! shared prefixes and conversations do to the time to first token.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::recorder;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tools' Python (`xtask/tools/setup.sh`), or `None` after saying why.
fn tools_python() -> Option<PathBuf> {
    let python = root().join(".venv-tools/bin/python");
    if python.exists() {
        Some(python)
    } else {
        common::skip(&format!(
            "{} is missing; run xtask/tools/setup.sh (the Python tokenizers package is the reference these counts are checked against)",
            python.display()
        ));
        None
    }
}

fn python(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_ok(args: &[&str]) -> String {
    let out = common::loadgen(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        matches!(out.status.code(), Some(0)),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every prompt of three length distributions has exactly its drawn
/// number of tokens under three tokenizers, counted by the Python
/// `tokenizers` package: a byte-level BPE (GPT-2 style), the tiny GGUF's
/// SentencePiece-style vocabulary (`xtask/llama/make_tokenizer.py`) and a
/// BPE whose tokens span words (no word adds up to one token there, so
/// every prompt is encoded and fixed). And a Mooncake trace whose hash ids
/// overlap: requests sharing their first k ids share their first k
/// blocks of tokens, and no more.
#[test]
fn prompt_token_counts_match_the_python_tokenizers_package() {
    let Some(py) = tools_python() else {
        return;
    };
    let dir = common::temp_dir("token-counts");
    let bpe = dir.join("bpe.json");
    let spm = dir.join("spm.json");
    let across = dir.join("across.json");
    let tools = root().join("xtask/tools");
    python(&py, &[s(&tools.join("make_bpe_tokenizer.py")), s(&bpe)]);
    python(
        &py,
        &[s(&root().join("xtask/llama/make_tokenizer.py")), s(&spm)],
    );
    python(
        &py,
        &[
            s(&tools.join("make_bpe_tokenizer.py")),
            "--across-words",
            s(&across),
        ],
    );
    let check = tools.join("check_prompts.py");
    for (tokenizer, n) in [(&bpe, "300"), (&spm, "300"), (&across, "40")] {
        for dist in ["100", "normal:300,80", "uniform:1,600"] {
            let dry = dir.join("dry.jsonl");
            let stdout = run_ok(&[
                "--api",
                "openai-completions",
                "--tokenizer",
                s(tokenizer),
                "--input-tokens",
                dist,
                "--output-tokens",
                "8",
                "-n",
                n,
                "--dry-run",
                s(&dry),
                "-q",
            ]);
            assert!(
                stdout.contains(&format!("Dry run: {n} requests written")),
                "{stdout}"
            );
            let report: Value =
                serde_json::from_str(&python(&py, &[s(&check), s(tokenizer), s(&dry)])).unwrap();
            assert_eq!(report["checked"].as_u64(), n.parse().ok(), "{report}");
            assert_eq!(
                report["mismatched"],
                0,
                "{}: {dist}: {report}",
                tokenizer.display()
            );
        }
    }
    // A Mooncake trace of 120 rows whose ids share prefixes of 0 to 3
    // blocks of 16 tokens, lengths cut mid-block too.
    let trace = dir.join("mooncake.jsonl");
    let mut text = String::new();
    for k in 0..120u64 {
        let shared = k % 4;
        let mut ids: Vec<u64> = (1..=shared).collect();
        ids.extend([1000 + k, 2000 + k]);
        let input = 16 * ids.len() as u64 - (k % 5) * 3;
        text.push_str(&format!(
            "{{\"timestamp\": {}, \"input_length\": {input}, \"output_length\": 4, \"hash_ids\": {ids:?}}}\n",
            k * 10
        ));
    }
    std::fs::write(&trace, text).unwrap();
    for tokenizer in [&bpe, &spm] {
        let dry = dir.join("trace-dry.jsonl");
        run_ok(&[
            "--api",
            "openai-chat",
            "--tokenizer",
            s(tokenizer),
            "--trace",
            s(&trace),
            "--trace-block-tokens",
            "16",
            "--dry-run",
            s(&dry),
            "-q",
        ]);
        let report: Value = serde_json::from_str(&python(
            &py,
            &[s(&check), s(tokenizer), s(&dry), s(&trace), "16"],
        ))
        .unwrap();
        assert_eq!(report["checked"], 120, "{report}");
        assert_eq!(report["mismatched"], 0, "{report}");
        assert!(report["pairs"].as_u64().unwrap() > 1000, "{report}");
        assert_eq!(report["prefix_failures"], serde_json::json!([]), "{report}");
    }
}

/// Over 10,000 requests the drawn lengths (prompt and max_tokens) have
/// the asked mean and standard deviation within 2%; the dry run shows
/// them as the requests carry them.
#[test]
fn ten_thousand_drawn_lengths_have_the_asked_mean_and_spread() {
    let dir = common::temp_dir("moments");
    let dry = dir.join("dry.jsonl");
    run_ok(&[
        "--api",
        "openai-completions",
        "--input-tokens",
        "normal:512,128",
        "--output-tokens",
        "uniform:100,900",
        "-n",
        "10000",
        "--dry-run",
        s(&dry),
        "-q",
    ]);
    let rows = lines(&dry);
    assert_eq!(rows.len(), 10_000);
    let moments = |key: &str| {
        let v: Vec<f64> = rows.iter().map(|r| r[key].as_f64().unwrap()).collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        (mean, sd)
    };
    let (mean, sd) = moments("input_tokens");
    assert!(
        (mean / 512.0 - 1.0).abs() < 0.02 && (sd / 128.0 - 1.0).abs() < 0.02,
        "{mean} {sd}"
    );
    let (mean, sd) = moments("max_tokens");
    let want_sd = ((801.0f64 * 801.0 - 1.0) / 12.0).sqrt();
    assert!(
        (mean / 500.0 - 1.0).abs() < 0.02 && (sd / want_sd - 1.0).abs() < 0.02,
        "{mean} {sd}"
    );
    // The body carries them: max_tokens and a prompt of that many words.
    let first = &rows[0];
    assert_eq!(first["body"]["max_tokens"], first["max_tokens"]);
    let words = first["body"]["prompt"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .count();
    assert_eq!(Some(words as u64), first["input_tokens"].as_u64());
    // The same seed gives the same requests; another seed others.
    let again = dir.join("again.jsonl");
    run_ok(&[
        "--api",
        "openai-completions",
        "--input-tokens",
        "normal:512,128",
        "--output-tokens",
        "uniform:100,900",
        "-n",
        "10000",
        "--dry-run",
        s(&again),
        "-q",
    ]);
    assert_eq!(std::fs::read(&dry).unwrap(), std::fs::read(&again).unwrap());
}

/// A stub-server whose LLM routes cost `prefill_per_token_ms` per prompt
/// token, with a prefix cache of `cache_blocks` blocks of 16 tokens.
fn llm_server(prefill_per_token_ms: f64, cache_blocks: usize) -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.llm = stub_server::LlmConfig {
        max_num_seqs: 256,
        step_base_ms: 1.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms,
        max_batched_tokens: 1 << 20,
        prefix_cache_blocks: cache_blocks,
        ..stub_server::LlmConfig::default()
    };
    stub_server::spawn(config).unwrap()
}

/// A Prometheus sample of stub-server's `/metrics`.
fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    // `name value` or `name{labels} value`.
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// A trace of 2,000 rows 5 ms apart (200 requests/s) replayed against the
/// simulator's OpenAI route: every row is sent on its time, and the summary
/// reports the schedule's adherence, the same numbers the log's
/// `send_lag_ms` gives (numpy's linear percentiles).
#[test]
fn a_2000_row_trace_at_200_per_second_reports_its_schedule_adherence() {
    let server = llm_server(0.0, 0);
    let dir = common::temp_dir("adherence");
    let trace = dir.join("trace.jsonl");
    let mut text = String::new();
    for k in 0..2000u64 {
        text.push_str(&format!(
            "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": 2, \"hash_ids\": [{}]}}\n",
            k * 5,
            20 + k % 7,
            k % 3
        ));
    }
    std::fs::write(&trace, text).unwrap();
    let (csv, json) = (dir.join("log.csv"), dir.join("summary.json"));
    let stdout = run_ok(&[
        "--url",
        &format!("http://{}", server.addr),
        "--api",
        "openai-completions",
        "--trace",
        s(&trace),
        "--trace-block-tokens",
        "8",
        "--timeout",
        "10s",
        "-o",
        s(&csv),
        "--json",
        s(&json),
        "-q",
    ]);
    let summary = summary(&json);
    assert_eq!(
        (summary["total"].as_u64(), summary["failed"].as_u64()),
        (Some(2000), Some(0))
    );
    let rows = model::log::read_log_file(&csv).unwrap().rows;
    let mut lags: Vec<f64> = rows.iter().map(|r| r.send_lag_ms.unwrap()).collect();
    lags.sort_by(f64::total_cmp);
    let lag = &summary["send_lag"];
    assert_eq!(lag["count"], 2000);
    // The log keeps whole microseconds of each lag.
    for (key, q) in [("p50_ms", 0.5), ("p99_ms", 0.99)] {
        let want = common::percentile(&lags, q);
        assert!(
            (lag[key].as_f64().unwrap() - want).abs() <= 0.001,
            "{key}: {lag}"
        );
    }
    assert!((lag["max_ms"].as_f64().unwrap() - lags[1999]).abs() <= 0.001);
    // A send is late past 2 ms of its exact lag; the log rounds the lag to
    // the microsecond, so one just past 2 ms logs as 2.000.
    let late = summary["late_sends"].as_u64().unwrap();
    let over = |at_least: bool| {
        lags.iter()
            .filter(|l| if at_least { **l >= 2.0 } else { **l > 2.0 })
            .count() as u64
    };
    assert!(
        (over(false)..=over(true)).contains(&late),
        "late sends {late}, logged lags over 2 ms {}, at least 2 ms {}",
        over(false),
        over(true)
    );
    // Each row's latency runs from its time in the trace: the rows' starts
    // are 5 ms apart exactly, whatever the sends' lateness.
    let mut starts: Vec<(u64, f64)> = rows
        .iter()
        .map(|r| (r.request_id, r.timestamp_ms))
        .collect();
    starts.sort_by_key(|r| r.0);
    for pair in starts.windows(2) {
        assert!((pair[1].1 - pair[0].1 - 5.0).abs() < 0.01, "{pair:?}");
    }
    assert_eq!(summary["workload"]["trace"]["in_window"], 2000);
    assert!(
        stdout.contains("Schedule adherence: send lateness"),
        "{stdout}"
    );
    eprintln!(
        "adherence of 2000 rows at 200/s: send lateness P50 {} ms, P99 {} ms, max {} ms, {late} late (> 2 ms)",
        lag["p50_ms"], lag["p99_ms"], lag["max_ms"]
    );
}

/// Azure's and BurstGPT's CSV traces replay end to end: each row a
/// request at its time (scaled by the speedup) with its lengths; the
/// BurstGPT row of a request that failed in production is skipped.
#[test]
fn azure_and_burstgpt_traces_replay_with_their_lengths_and_times() {
    let server = recorder::start();
    let dir = common::temp_dir("csv-traces");
    let azure = dir.join("azure.csv");
    std::fs::write(
        &azure,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n\
         2023-11-16 18:15:46.6805900,374,44\n\
         2023-11-16 18:15:50.9951690,396,109\n",
    )
    .unwrap();
    let burst = dir.join("burst.csv");
    std::fs::write(
        &burst,
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
         5,ChatGPT,472,18,490,Conversation log\n\
         6,ChatGPT,1087,0,1087,Conversation log\n\
         7.5,GPT-4,417,276,693,API log\n",
    )
    .unwrap();
    for (trace, speedup, lengths, gap_ms) in [
        (&azure, "10", [(374, 44), (396, 109)], 431.4579),
        (&burst, "5", [(472, 18), (417, 276)], 500.0),
    ] {
        let before = server.bodies().len();
        let (csv, json) = (dir.join("log.csv"), dir.join("s.json"));
        run_ok(&[
            "--url",
            &server.url(),
            "--api",
            "openai-chat",
            "--trace",
            s(trace),
            "--trace-speedup",
            speedup,
            "-o",
            s(&csv),
            "--json",
            s(&json),
            "-q",
        ]);
        let bodies = &server.bodies()[before..];
        let rows = model::log::read_log_file(&csv).unwrap().rows;
        assert_eq!((bodies.len(), rows.len()), (2, 2));
        for (row, (input, output)) in rows.iter().zip(lengths) {
            assert_eq!(
                (row.input_tokens, row.max_tokens),
                (Some(input), Some(output))
            );
            let body = &bodies[usize::try_from(row.request_id).unwrap()];
            assert_eq!(body["max_tokens"], output);
            let words = body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .count();
            assert_eq!(
                words, input as usize,
                "no tokenizer: one common word a token"
            );
        }
        assert!((rows[1].timestamp_ms - rows[0].timestamp_ms - gap_ms).abs() < 0.01);
        let trace_summary = &summary(&json)["workload"]["trace"];
        let skipped = if trace == &burst { 1 } else { 0 };
        assert_eq!(
            trace_summary["failed_rows_skipped"], skipped,
            "{trace_summary}"
        );
    }
}

/// A conversation's third turn carries the first two messages and the
/// server's two answers, streamed or whole; the log gives each turn's
/// session and turn.
#[test]
fn a_conversations_third_turn_carries_the_first_two_answers() {
    for stream in [true, false] {
        let server = recorder::start();
        let dir = common::temp_dir("conversation");
        let csv = dir.join("log.csv");
        let url = server.url();
        let mut args = vec![
            "--url",
            &url,
            "--api",
            "openai-chat",
            "--input-tokens",
            "6",
            "--output-tokens",
            "3",
            "--turns",
            "3",
            "--think-time",
            "5ms",
            "-n",
            "2",
            "-c",
            "1",
            "-o",
            s(&csv),
            "-q",
        ];
        if !stream {
            args.push("--no-stream");
        }
        let out = run_ok(&args);
        assert!(out.contains("Conversations: 2 started"), "{out}");
        let bodies = server.bodies();
        assert_eq!(
            bodies.len(),
            6,
            "two sessions of three turns, one after another"
        );
        for session in 0..2 {
            let turns = &bodies[3 * session..3 * session + 3];
            let content =
                |b: &Value, i: usize| b["messages"][i]["content"].as_str().unwrap().to_owned();
            let first = content(&turns[0], 0);
            let second = content(&turns[1], 2);
            let third = turns[2]["messages"].as_array().unwrap();
            let expected = [
                ("user", first.clone()),
                ("assistant", format!("answer-{}", 3 * session)),
                ("user", second),
                ("assistant", format!("answer-{}", 3 * session + 1)),
            ];
            for (message, (role, text)) in third.iter().zip(expected) {
                assert_eq!(
                    (
                        message["role"].as_str().unwrap(),
                        message["content"].as_str().unwrap()
                    ),
                    (role, text.as_str())
                );
            }
            assert_eq!(third.len(), 5);
            assert_eq!(
                third[4]["content"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .count(),
                6
            );
            assert_ne!(third[4]["content"], third[0]["content"]);
        }
        let rows = model::log::read_log_file(&csv).unwrap().rows;
        let mut turns: Vec<(u64, u32)> = rows
            .iter()
            .map(|r| (r.session_id.unwrap(), r.turn.unwrap()))
            .collect();
        turns.sort_unstable();
        assert_eq!(turns, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]);
        // The recorder counts the whole history's words as the prompt.
        let third = rows.iter().find(|r| r.turn == Some(3)).unwrap();
        assert_eq!(third.prompt_tokens, Some(6 + 1 + 6 + 1 + 6));
    }
}

/// A ShareGPT dataset: without --turns each human turn is a prompt of its
/// own, in order; with --turns from-data each conversation is a session
/// whose human turns are its turns, the server's answers in between.
#[test]
fn sharegpt_human_turns_become_prompts_or_sessions() {
    let server = recorder::start();
    let dir = common::temp_dir("sharegpt");
    let data = dir.join("sharegpt.json");
    std::fs::write(
        &data,
        r#"[{"id": "a", "conversations": [
              {"from": "human", "value": "what is a cat"},
              {"from": "gpt", "value": "an animal"},
              {"from": "human", "value": "and a dog"}]},
            {"id": "b", "conversations": [{"from": "human", "value": "hello there"}]}]"#,
    )
    .unwrap();
    let base = [
        "--url",
        &server.url(),
        "--api",
        "openai-chat",
        "--payloads",
        s(&data),
        "--payloads-format",
        "sharegpt",
        "-c",
        "1",
        "-q",
    ];
    let mut args = base.to_vec();
    args.extend(["-n", "3"]);
    run_ok(&args);
    let prompts: Vec<Value> = server
        .bodies()
        .iter()
        .map(|b| b["messages"].clone())
        .collect();
    assert_eq!(
        prompts,
        [
            serde_json::json!([{"role": "user", "content": "what is a cat"}]),
            serde_json::json!([{"role": "user", "content": "and a dog"}]),
            serde_json::json!([{"role": "user", "content": "hello there"}]),
        ]
    );
    let mut args = base.to_vec();
    args.extend(["-n", "2", "--turns", "from-data"]);
    let out = run_ok(&args);
    assert!(out.contains("Conversations: 2 started"), "{out}");
    let sessions: Vec<Value> = server.bodies()[3..]
        .iter()
        .map(|b| b["messages"].clone())
        .collect();
    assert_eq!(
        sessions,
        [
            serde_json::json!([{"role": "user", "content": "what is a cat"}]),
            serde_json::json!([
                {"role": "user", "content": "what is a cat"},
                {"role": "assistant", "content": "answer-3"},
                {"role": "user", "content": "and a dog"}]),
            serde_json::json!([{"role": "user", "content": "hello there"}]),
        ]
    );
}

/// The warm-up's rows are logged with phase=warmup, for every API, and are
/// in no number of the summary (nor in what a reader of the log counts).
#[test]
fn warmup_rows_are_logged_and_left_out_of_the_summary() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("warmup-rows");
    for (api, url, extra) in [
        ("simulator", server.url(), vec!["-c", "2"]),
        (
            "openai-chat",
            format!("http://{}", server.addr),
            vec!["--rate", "200", "-c", "2"],
        ),
    ] {
        let (csv, json) = (
            dir.join(format!("{api}.csv")),
            dir.join(format!("{api}.json")),
        );
        let mut args = vec![
            "--url",
            &url,
            "--api",
            api,
            "--warmup",
            "7",
            "-n",
            "10",
            "-o",
            s(&csv),
            "--json",
            s(&json),
            "-q",
        ];
        args.extend(extra);
        let out = run_ok(&args);
        assert!(
            out.contains("Warm-up: 7 rows logged with phase=warmup"),
            "{out}"
        );
        let summary = summary(&json);
        assert_eq!(
            (summary["total"].as_u64(), summary["warmup_rows"].as_u64()),
            (Some(10), Some(7))
        );
        let all = model::log::read_log_all(std::fs::File::open(&csv).unwrap())
            .unwrap()
            .rows;
        let warm = all
            .iter()
            .filter(|r| r.phase == model::log::Phase::Warmup)
            .count();
        assert_eq!((all.len(), warm), (17, 7));
        let measured = model::log::read_log_file(&csv).unwrap().rows;
        assert_eq!(measured.len(), 10);
        assert!(measured
            .iter()
            .all(|r| r.phase == model::log::Phase::Measure));
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(text.matches(",warmup,").count(), 7, "{text}");
    }
}

/// The open loop's stages ramp the rate as the integral says (a dry run
/// shows each send's time), and with -c they step the workers: never more
/// in flight than the stage allows, and the higher stage reached.
#[test]
fn stages_ramp_the_rate_and_step_the_workers() {
    let dir = common::temp_dir("stages");
    let dry = dir.join("dry.jsonl");
    let out = run_ok(&[
        "--api",
        "openai-completions",
        "--input-tokens",
        "4",
        "--stages",
        "1s:100,1s:100,1s:0",
        "--dry-run",
        s(&dry),
        "-q",
    ]);
    assert!(out.contains("Dry run: 201 requests"), "{out}");
    let times: Vec<f64> = lines(&dry)
        .iter()
        .map(|r| r["at_s"].as_f64().unwrap())
        .collect();
    // 0 -> 100 req/s over 1 s: Λ(t) = 50 t², arrival k at sqrt(k / 50).
    for (k, t) in [(2usize, 0.2), (50, 1.0), (100, 1.5), (150, 2.0), (200, 3.0)] {
        assert!(
            (times[k] - t).abs() < 1e-5,
            "arrival {k}: {} vs {t}",
            times[k]
        );
    }
    let mut sim = stub_server::ServerConfig::profile("zero-cost").unwrap();
    sim.bind = "127.0.0.1:0".parse().unwrap();
    sim.service.base_ms = 20.0;
    let server = stub_server::spawn(sim).unwrap();
    let csv = dir.join("log.csv");
    run_ok(&[
        "--url",
        &server.url(),
        "--stages",
        "400ms:1,400ms:4",
        "-c",
        "1",
        "-o",
        s(&csv),
        "-q",
    ]);
    let rows = model::log::read_log_file(&csv).unwrap().rows;
    let first = rows
        .iter()
        .map(|r| r.timestamp_ms)
        .fold(f64::INFINITY, f64::min);
    let in_flight_at = |t: f64| {
        rows.iter()
            .filter(|r| r.timestamp_ms <= t && t < r.timestamp_ms + r.latency_ms)
            .count()
    };
    let mut most = [0usize; 2];
    for r in &rows {
        let stage = usize::from(r.timestamp_ms - first >= 400.0);
        most[stage] = most[stage].max(in_flight_at(r.timestamp_ms));
    }
    assert_eq!(most[0], 1, "stage 1 runs one worker");
    assert_eq!(most[1], 4, "stage 2 runs four");
    assert!(rows.iter().all(|r| r.timestamp_ms - first < 800.0 + 1.0));
}

/// What the simulator's prefix cache does to the time to first token:
/// prompts that share a 480-token prefix prefill only their own 32 tokens
/// once it is cached (the server counts the hits), against prompts of the
/// same length that share nothing; and a conversation's later turns, whose
/// history is cached, against the same turns without the cache, whose
/// prefill grows with the history. The simulated prefill cost (0.1 ms a
/// token) dwarfs the noise, so the ratios are wide.
#[test]
fn shared_prefixes_and_conversations_show_their_effect_on_ttft() {
    let dir = common::temp_dir("prefix-ttft");
    let run = |server: &stub_server::RunningServer, args: &[&str]| -> Value {
        let json = dir.join("s.json");
        let mut all = vec![
            "--url".to_owned(),
            format!("http://{}", server.addr),
            "--api".into(),
            "openai-chat".into(),
            "--json".into(),
            s(&json).into(),
            "-q".into(),
            "-c".into(),
            "1".into(),
            "--ignore-eos".into(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_ok(&all);
        summary(&json)
    };
    let cached = llm_server(0.1, 100_000);
    let shared = run(
        &cached,
        &[
            "--input-tokens",
            "32",
            "--prefix-tokens",
            "480",
            "--prefix-count",
            "1",
            "--output-tokens",
            "4",
            "-n",
            "20",
        ],
    );
    // The first prompt misses; the other 19 hit the prefix's 30 blocks.
    assert_eq!(
        metric(cached.addr, "vllm:prefix_cache_hits_total"),
        19.0 * 480.0
    );
    let unique = run(
        &cached,
        &["--input-tokens", "512", "--output-tokens", "4", "-n", "20"],
    );
    let ttft = |s: &Value| s["llm"]["ttft"]["p50_ms"].as_f64().unwrap();
    let (shared_ms, unique_ms) = (ttft(&shared), ttft(&unique));
    assert!(
        shared_ms * 3.0 < unique_ms,
        "shared prefix {shared_ms} ms vs unique {unique_ms} ms"
    );

    let conversation = [
        "--input-tokens",
        "200",
        "--output-tokens",
        "20",
        "--turns",
        "4",
        "-n",
        "6",
    ];
    let with_cache = run(&llm_server(0.1, 100_000), &conversation);
    let without = run(&llm_server(0.1, 0), &conversation);
    let by_turn = |s: &Value, turn: usize| {
        s["workload"]["ttft_by_turn"][turn - 1]["p50_ms"]
            .as_f64()
            .unwrap()
    };
    assert!(
        by_turn(&without, 4) > 2.0 * by_turn(&without, 1),
        "{}",
        without["workload"]
    );
    assert!(
        by_turn(&with_cache, 4) * 2.0 < by_turn(&without, 4),
        "{}\n{}",
        with_cache["workload"],
        without["workload"]
    );
    eprintln!(
        "TTFT P50: shared 480-token prefix {shared_ms:.2} ms, unique 512-token prompts {unique_ms:.2} ms; conversation turns 1..4 with cache {:?}, without {:?}",
        (1..=4).map(|t| by_turn(&with_cache, t)).collect::<Vec<_>>(),
        (1..=4).map(|t| by_turn(&without, t)).collect::<Vec<_>>()
    );
}

/// Every bad input is refused with its reason before any request: the
/// recording server gets nothing.
#[test]
fn bad_inputs_are_refused_before_any_request() {
    let server = recorder::start();
    let url = server.url();
    let dir = common::temp_dir("workload-bad");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good_trace = write(
        "good.jsonl",
        "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n",
    );
    let bad_row = write("bad.jsonl", "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1, \"input_length\": \"x\"}\n");
    let disorder = write("disorder.jsonl", "{\"timestamp\": 9, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 2, \"input_length\": 5, \"output_length\": 1}\n");
    let not_tokenizer = write("tok.json", "{\"not\": 1}");
    let not_sharegpt = write("s.json", "{\"conversations\": []}");
    let messages = write(
        "m.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
    );
    let unknown = write("what.txt", "hello\n");
    let chat = ["--url", url.as_str(), "--api", "openai-chat"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tokenizer", "/nonexistent/tokenizer.json", "--input-tokens", "5"], "--tokenizer /nonexistent/tokenizer.json: no such file; give a local Hugging Face tokenizer.json"),
        (vec!["--tokenizer", &not_tokenizer, "--input-tokens", "5"], "not a Hugging Face tokenizer.json"),
        (vec!["--tokenizer", &not_tokenizer], "--tokenizer makes prompts of drawn lengths exact; give --input-tokens"),
        (vec!["--input-tokens", "0"], "\"0\" has a length out of range; give N"),
        (vec!["--input-tokens", "normal:5"], "needs two numbers after the colon"),
        (vec!["--output-tokens", "uniform:9,3"], "has LO above HI"),
        (vec!["--trace", "/nonexistent/trace.jsonl"], "--trace /nonexistent/trace.jsonl: No such file"),
        (vec!["--trace", &bad_row], "line 2: invalid type"),
        (vec!["--trace", &disorder], "line 2: timestamp 2.000 ms is earlier than the previous row's 9.000 ms; replay needs rows in time order (give --trace-sort"),
        (vec!["--trace", &unknown], "cannot tell its format (its first line is \"hello\"); give --trace-format"),
        (vec!["--trace", &good_trace, "--trace-start", "1h"], "no row to replay in the window of --trace-start 3600.000 s"),
        (vec!["--trace", &good_trace, "--rate", "5"], "--trace sets every request's time from its rows; drop --rate"),
        (vec!["--trace", &good_trace, "-n", "5"], "--trace sets every request's time, prompt length and max_tokens from its rows; drop -n"),
        (vec!["--trace", &good_trace, "--input-tokens", "5"], "drop --input-tokens"),
        (vec!["--trace", &good_trace, "--trace-speedup", "0"], "\"0\" is out of range; the trace speedup is a factor more than 0"),
        (vec!["--trace-speedup", "2"], "--trace <FILE>"),
        (vec!["--prefix-tokens", "8", "--input-tokens", "5"], "--prefix-count <K>"),
        (vec!["--prefix-tokens", "8", "--prefix-count", "2"], "give --input-tokens DIST for the rest of each prompt"),
        (vec!["--turns", "from-data"], "--turns from-data replays a dataset's conversations: give --payloads FILE --payloads-format sharegpt"),
        (vec!["--turns", "0"], "--turns: \"0\" has a length out of range"),
        (vec!["--think-time", "1s"], "--turns <DIST|from-data>"),
        (vec!["--payloads", &not_sharegpt, "--payloads-format", "sharegpt"], "a ShareGPT file is a JSON list"),
        (vec!["--payloads", &messages, "--turns", "2"], "--turns builds each conversation's messages itself"),
        (vec!["--payloads-format", "sharegpt"], "--payloads <FILE>"),
        (vec!["--output-tokens", "5", "--max-tokens", "5"], "--output-tokens draws each request's max_tokens; drop --max-tokens"),
        (vec!["--ignore-eos"], "--ignore-eos makes answers run to max_tokens; give --output-tokens DIST or --max-tokens N"),
        (vec!["--stages", "1s:5", "-z", "2s"], "--stages 1s:5 sets the run's length (1 s); drop -z"),
        (vec!["--stages", "1s"], "--stages \"1s\": stage \"1s\" has no colon"),
        (vec!["--stages", "1s:5", "-c", "2", "--rate", "3"], "--stages steps either the open loop's rate"),
        (vec!["--stages", "1s:2.5", "-c", "2"], "with -c each target is a number of workers"),
        (vec!["--arrival", "poisson"], "--arrival and --max-in-flight apply to the open loop"),
        (vec!["--dry-run", "d.jsonl", "--turns", "2", "-n", "2"], "--dry-run cannot write conversations"),
        (vec!["--dry-run", "d.jsonl", "-z", "2s"], "--dry-run writes the requests a closed-loop run would send, which -z alone does not count: give -n"),
    ];
    for (args, needle) in &cases {
        let mut all = chat.to_vec();
        all.extend(args.iter().copied());
        let out = common::loadgen(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: wanted {needle:?} in:\n{stderr}"
        );
    }
    // The workload flags are the LLM APIs'.
    for (api, args) in [
        ("simulator", vec!["--input-tokens", "5"]),
        (
            "template",
            vec!["--body-template", &good_trace, "--trace", &good_trace],
        ),
        ("openai-completions", vec!["--turns", "2"]),
        ("kserve-v2-grpc", vec!["--input-tokens", "5"]),
        ("kserve-v2-grpc", vec!["--trace", &good_trace]),
        ("kserve-v2-grpc", vec!["--turns", "2"]),
        (
            "kserve-v2-grpc",
            vec!["--tokenizer", "tokenizer.json", "--output-tokens", "5"],
        ),
        (
            "kserve-v2-grpc",
            vec!["--payloads", &good_trace, "--payloads-format", "sharegpt"],
        ),
    ] {
        let mut all = vec!["--url", url.as_str(), "--api", api];
        all.extend(args);
        let out = common::loadgen(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{api}: {stderr}");
        assert!(
            stderr.contains("apply to --api openai-chat and openai-completions, not --api")
                || stderr.contains("--turns sends conversations, whose history is chat messages: use --api openai-chat"),
            "{api}: {stderr}"
        );
    }
    // A dry run writes HTTP bodies, which gRPC does not send.
    let out = common::loadgen(&[
        "--url",
        url.as_str(),
        "--api",
        "kserve-v2-grpc",
        "--dry-run",
        "d.jsonl",
        "-n",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--dry-run writes HTTP request bodies, and --api kserve-v2-grpc sends protobuf messages"),
        "{stderr}"
    );
    assert!(server.bodies().is_empty(), "a bad input sent a request");
}
