// Enumerated command-line choices.

import ArgumentParser
import Convert
import Formats

enum FormatChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, torch, safetensors, npz, npy, pickle, onnx, keras

    var sourceFormat: SourceFormat? {
        switch self {
        case .auto: return nil
        case .torch: return .torchZip
        case .safetensors: return .safetensors
        case .npz: return .npz
        case .npy: return .npy
        case .pickle: return .pickle
        case .onnx: return nil // read by ONNX.OnnxImport, not CheckpointReader
        case .keras: return nil // read by Keras.KerasImport in a worker process
        }
    }
}

extension Naming: ExpressibleByArgument {}
extension DTypePolicy: ExpressibleByArgument {}
extension InflateMode: ExpressibleByArgument {}
extension ExportTarget: ExpressibleByArgument {}
