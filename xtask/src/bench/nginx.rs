//! nginx as the bench's cheap server: a static JSON answer to every POST,
//! over plain HTTP or TLS 1.3, on its own prefix directory.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tls::Certificate;
use super::TaskError;
use crate::process::ProcessError;

/// nginx answering every request with a static JSON file, on its own
/// prefix directory, stopped (SIGQUIT, then SIGKILL) when dropped.
pub(super) struct Nginx {
    child: Child,
    /// The URL to load.
    pub url: String,
}

impl Nginx {
    /// The master's process id (its workers are its children).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `bin` with `workers` worker processes on a free loopback port,
    /// over TLS 1.3 with `tls` when given.
    pub(super) fn start(
        bin: &Path,
        dir: &Path,
        workers: usize,
        body: &str,
        tls: Option<&Certificate>,
    ) -> Result<Self, TaskError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TaskError::Io { path, source }
        };
        let root = dir.join("html/v1");
        fs::create_dir_all(&root).map_err(io(&root))?;
        fs::create_dir_all(dir.join("tmp")).map_err(io(dir))?;
        fs::write(root.join("infer"), body).map_err(io(&root))?;
        // Ask the OS for a free port, then hand it to nginx (a tiny race
        // that cannot matter on a bench machine).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io(dir))?
            .port();
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, nginx_conf(dir, workers, port, tls)).map_err(io(&conf_path))?;
        let log = dir.join("stderr.log");
        let stderr = fs::File::create(&log).map_err(io(&log))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| {
                TaskError::Process(ProcessError::Spawn {
                    program: bin.display().to_string(),
                    source,
                })
            })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let nginx = Self {
            child,
            url: format!("{scheme}://127.0.0.1:{port}/v1/infer"),
        };
        // Ready when the port accepts (never a blind sleep).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(TaskError::Step(format!(
                    "nginx did not listen within 10 s; see {}",
                    dir.join("error.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

/// nginx's configuration: `workers` workers serving `dir/html` on
/// 127.0.0.1:`port`, over TLS 1.3 only with `tls` when given.
fn nginx_conf(dir: &Path, workers: usize, port: u16, tls: Option<&Certificate>) -> String {
    let d = dir.display();
    let (ssl, tls_lines) = match tls {
        Some(c) => (
            " ssl",
            format!(
                "    ssl_protocols TLSv1.3;\n    ssl_certificate {};\n    ssl_certificate_key {};\n",
                c.cert.display(),
                c.key.display()
            ),
        ),
        None => ("", String::new()),
    };
    // The static module answers POST to a file with 405; error_page turns
    // that into the file itself with 200, so loadgen, wrk and oha send
    // exactly what they send to the simulator.
    format!(
        "daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n\
           client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
           uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
           server {{\n    listen 127.0.0.1:{port}{ssl};\n{tls_lines}    root {d}/html;\n    default_type application/json;\n\
             location / {{ error_page 405 =200 $uri; }}\n  }}\n}}\n"
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child with a valid signal number.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
        }
        for _ in 0..250 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn nginx_speaks_tls_1_3_only_when_given_a_certificate() {
        let dir = Path::new("/tmp/n");
        let plain = nginx_conf(dir, 2, 8080, None);
        assert!(plain.contains("    listen 127.0.0.1:8080;\n"), "{plain}");
        assert!(!plain.contains("ssl"), "{plain}");
        let cert = Certificate {
            cert: PathBuf::from("/tmp/n/cert.pem"),
            key: PathBuf::from("/tmp/n/key.pem"),
        };
        let tls = nginx_conf(dir, 2, 8443, Some(&cert));
        for line in [
            "    listen 127.0.0.1:8443 ssl;\n",
            "    ssl_protocols TLSv1.3;\n",
            "    ssl_certificate /tmp/n/cert.pem;\n",
            "    ssl_certificate_key /tmp/n/key.pem;\n",
            "keepalive_requests 100000000;",
        ] {
            assert!(tls.contains(line), "{line:?} not in:\n{tls}");
        }
        // Everything else is the plaintext configuration.
        let stripped: String = tls
            .lines()
            .filter(|l| !l.trim_start().starts_with("ssl_"))
            .map(|l| format!("{}\n", l.replace(":8443 ssl;", ":8080;")))
            .collect();
        assert_eq!(stripped, plain);
    }
}
