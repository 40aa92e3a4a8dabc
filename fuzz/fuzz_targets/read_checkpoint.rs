#![no_main]
//! Any byte string must be read as a checkpoint or refused with an error:
//! never a panic, never an unbounded allocation. `read_any_checkpoint`
//! dispatches to the zoo pickle reader, the torch.save zip reader and the
//! legacy torch.save stream reader, so all three are covered; the yacs/YAML
//! config parser gets the same bytes as text.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = d2serve_d2onnx::read_checkpoint(data);
    let _ = d2serve_d2onnx::read_any_checkpoint(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = d2serve_d2onnx::yacs::parse_yaml(text);
    }
});
