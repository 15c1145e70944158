//! Compiles the public API (`proto/holdout/v1/holdout.proto`) with a vendored `protoc`, so a
//! fresh machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("holdout_descriptor.bin"))
        .compile_protos(&["proto/holdout/v1/holdout.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
