#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meetgate::fuzzing::zoom_app_context(data));
