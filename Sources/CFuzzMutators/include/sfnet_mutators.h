// Structure-aware mutators for sfnet's libFuzzer targets (issue 18 item 2): pickle opcode
// streams, protobuf (ONNX) messages and zip containers are parsed, mutated as structures
// (whole opcodes, fields, entries) and written back consistent (lengths, FRAMEs, memo
// indices, offsets, sizes, CRCs), mixed with libFuzzer's byte mutation. Plain C functions,
// so the ordinary build links them and FuzzReplayTests checks what they claim; the
// LLVMFuzzerCustomMutator entries of the fuzz executables (Sources/Fuzz*) call
// sfnet_custom_mutator.
#ifndef SFNET_MUTATORS_H
#define SFNET_MUTATORS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Which format a target's inputs are in.
typedef enum {
    SFNET_FORMAT_PICKLE = 0,   ///< one pickle (opcodes up to STOP), then anything
    SFNET_FORMAT_PROTOBUF = 1, ///< a protobuf message (ONNX ModelProto)
    SFNET_FORMAT_ZIP = 2,      ///< a zip archive; entries named *.pkl are mutated as pickles (torch)
} sfnet_format;

/// Mutates data[0..<size] in place into at most max_size bytes and returns the new size.
/// Mixes structure-aware mutation (most calls) with byte-level mutation (libFuzzer's
/// LLVMFuzzerMutate when linked, else a small internal one). Without libFuzzer the result
/// depends only on (data, size, max_size, seed); with it, also on libFuzzer's own -seed.
size_t sfnet_mutate(sfnet_format format, uint8_t *data, size_t size, size_t max_size, unsigned int seed);

/// The structure-aware part alone: returns 0 when the input could not be parsed into the
/// structure (or the result would not fit max_size) and data is left unchanged; otherwise the
/// new size, and the output is well-formed in the sense documented for each format:
/// - pickle: opcodes with valid argument encodings, walkable opcode by opcode, the first STOP
///   is the last opcode of the stream, every FRAME's length covers exactly the opcodes up to
///   the next FRAME (or through STOP), every GET / BINGET / LONG_BINGET names a memo slot that
///   a PUT / BINPUT / LONG_BINPUT / MEMOIZE before it stored; bytes after the input's STOP kept.
/// - protobuf: every field a valid key + wire type 0, 1, 2 or 5, every length prefix exact.
/// - zip: EOCD (and zip64 records when used) at the end pointing at the central directory;
///   each central entry's local header has the same name, method, sizes and CRC; entries are
///   laid out in order without overlapping; the CRC is that of the (inflated) contents.
size_t sfnet_mutate_structured(sfnet_format format, uint8_t *data, size_t size, size_t max_size, unsigned int seed);

/// The fuzz executables' LLVMFuzzerCustomMutator body: sfnet_mutate, or libFuzzer's byte
/// mutation alone when the environment sets SFNET_FUZZ_MUTATOR=bytes (the A/B comparison).
size_t sfnet_custom_mutator(sfnet_format format, uint8_t *data, size_t size, size_t max_size, unsigned int seed);

/// 1 when libFuzzer's LLVMFuzzerMutate is linked (the fuzz executables), else 0.
int sfnet_have_libfuzzer(void);

#ifdef __cplusplus
}
#endif
#endif
