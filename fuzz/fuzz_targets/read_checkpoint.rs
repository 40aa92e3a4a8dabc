#![no_main]
//! Any byte string must be read as a checkpoint or refused with an error:
//! never a panic, never an unbounded allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = d2serve_d2onnx::read_checkpoint(data);
});
