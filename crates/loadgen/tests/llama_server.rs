//! Pooled connections against llama.cpp's own C++ server, `llama-server`
//! (`-np 2 --metrics`): it answers a streamed request with `Keep-Alive:
//! timeout=5, max=100` and then closes the connection. Every request must
//! still succeed, at the concurrency users ran it at. Without the binary
//! (`xtask/llama/build_server.sh`) the test says so and skips; under CI it
//! fails.

mod common;

use common::llama_server;

#[test]
fn pooled_streamed_requests_all_succeed_against_llama_server() {
    let dir = common::temp_dir("llama-server");
    let Some(server) =
        llama_server::start(&dir, &["-np", "2", "--metrics", "-c", "1024", "-t", "1"])
    else {
        return;
    };
    let url = server.base_url();
    for concurrency in ["6", "2"] {
        let json = dir.join(format!("summary-c{concurrency}.json"));
        let csv = dir.join(format!("log-c{concurrency}.csv"));
        let out = common::loadgen(&[
            "--url",
            &url,
            "--api",
            "openai-chat",
            "--max-tokens",
            "8",
            "--no-verify",
            "--connection",
            "pooled",
            "-n",
            "30",
            "-c",
            concurrency,
            "--timeout",
            "60s",
            "-o",
            csv.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "-c {concurrency}: {stdout}\n{}\nserver:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(
            (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
            (Some(30), Some(0)),
            "-c {concurrency}: {stdout}"
        );
        let rows = model::log::read_log_file(&csv).unwrap().rows;
        let retries: u64 = rows.iter().map(|r| u64::from(r.retries)).sum();
        assert_eq!(summary["retries"].as_u64(), Some(retries));
        // Streamed answers, timed token by token.
        assert!(rows
            .iter()
            .all(|r| r.ok && r.llm.as_ref().is_some_and(|l| l.ttft_ms.is_some())));
    }
}
