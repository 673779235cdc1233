//! Compiles the `.proto` files under `proto/` with the pure-Rust compiler `protox` (no `protoc`
//! is needed) and generates prost messages plus tonic clients and servers into `OUT_DIR`, one
//! file per protobuf package (`dolittle.runtime.events.rs`, ...).

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from("proto");
    let mut files = Vec::new();
    collect_proto_files(&proto_root, &mut files)?;
    files.sort();

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    // protox wants the files relative to an include directory, the way imports name them.
    let relative: Vec<PathBuf> = files
        .iter()
        .map(|file| file.strip_prefix(&proto_root).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;
    let descriptors = protox::compile(&relative, [&proto_root])?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The reverse-call services have an rpc named `Connect`, whose generated method would
        // clash with the client's `connect(endpoint)` constructor: clients are made with
        // `new(channel)` instead.
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)?;
    Ok(())
}

fn collect_proto_files(directory: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_proto_files(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|extension| extension == "proto")
        {
            files.push(path);
        }
    }
    Ok(())
}
