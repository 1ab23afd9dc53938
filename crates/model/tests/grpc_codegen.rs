//! The Rust code of the KServe v2 gRPC protocol (`model::kserve_grpc`) is
//! generated from `proto/*.proto` and committed, so that building the
//! toolkit compiles no proto compiler and runs no build script. This test
//! generates it again, in memory, with the same pure-Rust tools (protox
//! parses the .proto files, tonic-prost-build writes prost messages and
//! tonic stubs) and fails when the committed file differs: a .proto edited
//! without regenerating, or a generator upgraded.
//!
//! To regenerate: `MODEL_REGENERATE_PROTO=1 cargo test -p model --test
//! grpc_codegen`.

use std::path::{Path, PathBuf};

/// The committed generated file.
fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kserve_grpc/inference.rs")
}

/// The code the .proto files give today.
fn generate() -> String {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let descriptors = protox::compile([proto_dir.join("grpc_service.proto")], [&proto_dir])
        .unwrap_or_else(|e| panic!("proto/*.proto do not compile: {e:?}"));
    let out = tempfile_dir();
    tonic_prost_build::configure()
        // Generic clients over any transport: the crate that connects
        // chooses its own (and `model` needs no tonic transport).
        .build_transport(false)
        // Byte fields (raw tensor contents above all) as `bytes::Bytes`:
        // decoding shares the received buffer instead of copying it.
        .bytes(".inference")
        .emit_rerun_if_changed(false)
        .out_dir(&out)
        .compile_fds(descriptors)
        .expect("tonic-prost-build generates the code");
    let generated = std::fs::read_to_string(out.join("inference.rs"))
        .expect("the package `inference` gives inference.rs");
    let _ = std::fs::remove_dir_all(&out);
    generated
}

/// A fresh directory of this process under the system's temporary one.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("model-grpc-codegen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

#[test]
fn the_committed_grpc_code_is_what_the_proto_files_generate() {
    let generated = generate();
    let path = committed_path();
    if std::env::var_os("MODEL_REGENERATE_PROTO").is_some() {
        std::fs::write(&path, &generated).expect("write the generated code");
        eprintln!("regenerated {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what proto/*.proto generate; regenerate it with \
         `MODEL_REGENERATE_PROTO=1 cargo test -p model --test grpc_codegen` and commit it",
        path.display()
    );
}
