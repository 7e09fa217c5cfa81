// The size budgets of the ONNX importers (LIMITS.md), and the one checked reader of a parameter
// initializer that the SlowFast/X3D walk and the transformer walk share.
import Formats

/// The budgets the ONNX importers hold a graph's sizes to (LIMITS.md). Everything a parameter's shape
/// implies is bounded by bytes actually in the file: each dim is below `maxDim`, the element count is an
/// overflow-checked product that must match the data, and no dim is 0.
public enum OnnxLimits {
    /// One dim of an initializer: 2^40 (4 TiB of float32 in one row: no real network comes near it, and
    /// a product of a few such dims still fits an Int before the checked multiply).
    public static let maxDim = 1 << 40
    /// Rows of VideoMAE's fixed position table, each one compared with the sinusoid (a table the size of
    /// the file's data, but whose comparison allocates `rows x width` floats of its own).
    public static let maxPositionRows = 1 << 20

    /// The float tensor of a network parameter, checked: float dtype, every dim in [1, maxDim), and the
    /// data exactly dims x element size bytes (`what` names it in the error, e.g. "weight 'conv1.w'").
    static func parameter(_ i: OnnxInitializer, what: String, file: String) throws -> Tensor {
        guard let dt = OnnxImport.dtype(i.dataType) else {
            throw FormatError(.unsupported, "ONNX graph: \(what) has ONNX data type \(i.dataType), not a float type", file: file)
        }
        guard i.dims.allSatisfy({ $0 >= 0 && $0 < maxDim }) else {
            throw OnnxImport.fail("\(what) has dims \(i.dims) (each dim must be below 2^40)", file)
        }
        // Overflow-checked: dims [2^32, 2^32] must not wrap to 0 elements and match an empty raw_data,
        // and [0, 2^39, 2^39] (0 elements) must not reach code that multiplies the non-zero dims.
        let bytes = try? Checked.product(i.dims, elementSize: dt.size, "\(what) size")
        guard let bytes, bytes == i.rawData.count else {
            throw OnnxImport.fail("\(what) holds \(i.rawData.count) bytes, dims \(i.dims) x \(dt.size) need "
                + (bytes.map(String.init) ?? "more than Int.max"), file)
        }
        // No network parameter is empty, and a zero dim would let the others claim any size without data
        // (a conv weight [2^32, 3, 1, 0] made the folded BN allocate 2^32 channels: the fuzzer's OOM).
        guard !i.dims.contains(0) else { throw OnnxImport.fail("\(what) is empty (dims \(i.dims))", file) }
        return Tensor(dtype: dt, shape: i.dims, data: i.rawData)
    }
}
