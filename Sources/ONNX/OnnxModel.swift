// An ONNX ModelProto as plain Swift values, serialized and parsed through the
// protobuf-c code generated from onnx.proto (CONNX). Only the parts sfnet
// writes are modelled: one graph of nodes with int/ints/float attributes (and a
// Constant node's tensor `value`), initializers as raw_data, tensor-typed inputs
// and outputs, metadata props.

import CONNX
import Foundation
import Formats

/// One dimension of a value's shape: fixed or symbolic (`dim_param`).
public enum OnnxDim: Equatable, Sendable, CustomStringConvertible {
    case value(Int)
    case param(String)

    public var description: String {
        switch self {
        case let .value(v): return String(v)
        case let .param(p): return p
        }
    }
}

/// A node attribute (the kinds sfnet writes).
public enum OnnxAttributeValue: Equatable, Sendable {
    case int(Int)
    case ints([Int])
    case float(Float)
}

public struct OnnxNode: Sendable {
    public var opType: String
    public var name: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [(name: String, value: OnnxAttributeValue)]
    /// A tensor attribute named `value` (a Constant node's tensor; torch.onnx.export writes shapes,
    /// scalars and VideoMAE's position table this way), its bytes as an initializer's.
    public var tensorValue: OnnxInitializer?
    /// String attributes (Gelu's `approximate`), kept apart from the numeric ones.
    public var stringAttributes: [(name: String, value: String)] = []

    public init(_ opType: String, name: String, inputs: [String], outputs: [String],
                attributes: [(name: String, value: OnnxAttributeValue)] = [], tensorValue: OnnxInitializer? = nil) {
        self.opType = opType
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
        self.tensorValue = tensorValue
    }

    public func attribute(_ name: String) -> OnnxAttributeValue? { attributes.first { $0.name == name }?.value }
}

/// An initializer: TensorProto data type code (1 = FLOAT, 7 = INT64), dims, little-endian raw_data.
public struct OnnxInitializer: Sendable {
    public static let float: Int32 = 1
    public static let int64: Int32 = 7

    public var name: String
    public var dataType: Int32
    public var dims: [Int]
    public var rawData: Bytes
    /// Where the bytes live instead of raw_data when the model is saved with external data.
    public var external: OnnxExternalLocation?

    public init(name: String, dataType: Int32, dims: [Int], rawData: Bytes, external: OnnxExternalLocation? = nil) {
        self.name = name
        self.dataType = dataType
        self.dims = dims
        self.rawData = rawData
        self.external = external
    }

    /// float32 values, copied (little-endian, as ONNX's raw_data requires).
    public static func floats(_ name: String, dims: [Int], _ values: [Float]) -> OnnxInitializer {
        let bytes = values.withUnsafeBytes { OwnedBuffer(copying: $0).bytes }
        return OnnxInitializer(name: name, dataType: float, dims: dims, rawData: bytes)
    }

    public static func int64s(_ name: String, _ values: [Int]) -> OnnxInitializer {
        let v = values.map { Int64($0).littleEndian }
        return OnnxInitializer(name: name, dataType: int64, dims: [values.count],
                               rawData: v.withUnsafeBytes { OwnedBuffer(copying: $0).bytes })
    }
}

/// An initializer's bytes in an external data file: `location` is a bare file name
/// beside the model (never a path), `offset`/`length` in bytes.
public struct OnnxExternalLocation: Equatable, Sendable {
    public var location: String
    public var offset: Int
    public var length: Int

    public init(location: String, offset: Int, length: Int) {
        (self.location, self.offset, self.length) = (location, offset, length)
    }
}

/// A graph input or output of tensor type.
public struct OnnxValueInfo: Equatable, Sendable {
    public var name: String
    /// TensorProto data type code (1 = FLOAT).
    public var elemType: Int32
    public var dims: [OnnxDim]

    public init(name: String, elemType: Int32 = OnnxInitializer.float, dims: [OnnxDim]) {
        self.name = name
        self.elemType = elemType
        self.dims = dims
    }
}

public struct OnnxModel: Sendable {
    public var irVersion: Int
    /// Default-domain opset version.
    public var opset: Int
    public var producerName: String
    public var producerVersion: String
    public var docString: String
    public var graphName: String
    public var nodes: [OnnxNode]
    public var initializers: [OnnxInitializer]
    public var inputs: [OnnxValueInfo]
    public var outputs: [OnnxValueInfo]
    public var metadata: [(key: String, value: String)]

    public init(irVersion: Int, opset: Int, producerName: String = "sfnet", producerVersion: String = "",
                docString: String = "", graphName: String, nodes: [OnnxNode] = [], initializers: [OnnxInitializer] = [],
                inputs: [OnnxValueInfo] = [], outputs: [OnnxValueInfo] = [], metadata: [(key: String, value: String)] = []) {
        self.irVersion = irVersion
        self.opset = opset
        self.producerName = producerName
        self.producerVersion = producerVersion
        self.docString = docString
        self.graphName = graphName
        self.nodes = nodes
        self.initializers = initializers
        self.inputs = inputs
        self.outputs = outputs
        self.metadata = metadata
    }

    public func initializer(_ name: String) -> OnnxInitializer? { initializers.first { $0.name == name } }

    // MARK: - Serialize

    /// The ModelProto bytes (protobuf-c pack of the whole model, in memory).
    public func serialized() throws -> [UInt8] {
        let arena = Arena()
        return try withExtendedLifetime((initializers, nodes)) {
            let model = build(arena)
            let size = onnx__model_proto__get_packed_size(model)
            var out = [UInt8](repeating: 0, count: size)
            let written = out.withUnsafeMutableBufferPointer { onnx__model_proto__pack(model, $0.baseAddress!) }
            guard written == size else {
                throw FormatError(.io, "protobuf-c packed \(written) bytes, expected \(size)", file: graphName)
            }
            return out
        }
    }

    private func build(_ a: Arena) -> UnsafeMutablePointer<Onnx__ModelProto> {
        let m = a.message(Onnx__ModelProto.self, onnx__model_proto__init)
        m.pointee.has_ir_version = 1
        m.pointee.ir_version = Int64(irVersion)
        let opsetId = a.message(Onnx__OperatorSetIdProto.self, onnx__operator_set_id_proto__init)
        opsetId.pointee.domain = a.string("")
        opsetId.pointee.has_version = 1
        opsetId.pointee.version = Int64(opset)
        (m.pointee.n_opset_import, m.pointee.opset_import) = a.array([opsetId])
        m.pointee.producer_name = a.string(producerName)
        m.pointee.producer_version = a.string(producerVersion)
        if !docString.isEmpty { m.pointee.doc_string = a.string(docString) }
        (m.pointee.n_metadata_props, m.pointee.metadata_props) = a.array(metadata.map { kv in
            let e = a.message(Onnx__StringStringEntryProto.self, onnx__string_string_entry_proto__init)
            e.pointee.key = a.string(kv.key)
            e.pointee.value = a.string(kv.value)
            return e
        })

        let g = a.message(Onnx__GraphProto.self, onnx__graph_proto__init)
        g.pointee.name = a.string(graphName)
        (g.pointee.n_node, g.pointee.node) = a.array(nodes.map { node in
            let n = a.message(Onnx__NodeProto.self, onnx__node_proto__init)
            n.pointee.op_type = a.string(node.opType)
            n.pointee.name = a.string(node.name)
            (n.pointee.n_input, n.pointee.input) = a.array(node.inputs.map { a.string($0) })
            (n.pointee.n_output, n.pointee.output) = a.array(node.outputs.map { a.string($0) })
            (n.pointee.n_attribute, n.pointee.attribute) = a.array(node.attributes.map { attr in
                let p = a.message(Onnx__AttributeProto.self, onnx__attribute_proto__init)
                p.pointee.name = a.string(attr.name)
                p.pointee.has_type = 1
                switch attr.value {
                case let .int(v):
                    p.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT
                    p.pointee.has_i = 1
                    p.pointee.i = Int64(v)
                case let .ints(vs):
                    p.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
                    (p.pointee.n_ints, p.pointee.ints) = a.values(vs.map { Int64($0) })
                case let .float(v):
                    p.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT
                    p.pointee.has_f = 1
                    p.pointee.f = v
                }
                return p
            } + node.stringAttributes.map { attr in
                let p = a.message(Onnx__AttributeProto.self, onnx__attribute_proto__init)
                p.pointee.name = a.string(attr.name)
                p.pointee.has_type = 1
                p.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING
                p.pointee.has_s = 1
                let bytes = Array(attr.value.utf8)
                let (n, ptr) = a.values(bytes)
                p.pointee.s = ProtobufCBinaryData(len: n, data: ptr)
                return p
            } + (node.tensorValue.map { t in
                let p = a.message(Onnx__AttributeProto.self, onnx__attribute_proto__init)
                p.pointee.name = a.string("value")
                p.pointee.has_type = 1
                p.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR
                p.pointee.t = tensorProto(t)
                return [p]
            } ?? []))
            return n
        })
        (g.pointee.n_initializer, g.pointee.initializer) = a.array(initializers.map(tensorProto))
        func tensorProto(_ t: OnnxInitializer) -> UnsafeMutablePointer<Onnx__TensorProto> {
            let p = a.message(Onnx__TensorProto.self, onnx__tensor_proto__init)
            p.pointee.name = a.string(t.name)
            p.pointee.has_data_type = 1
            p.pointee.data_type = t.dataType
            (p.pointee.n_dims, p.pointee.dims) = a.values(t.dims.map { Int64($0) })
            if let ext = t.external {
                p.pointee.has_data_location = 1
                p.pointee.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
                (p.pointee.n_external_data, p.pointee.external_data) = a.array(
                    [("location", ext.location), ("offset", String(ext.offset)), ("length", String(ext.length))].map { kv in
                        let e = a.message(Onnx__StringStringEntryProto.self, onnx__string_string_entry_proto__init)
                        e.pointee.key = a.string(kv.0)
                        e.pointee.value = a.string(kv.1)
                        return e
                    })
                return p
            }
            p.pointee.has_raw_data = 1
            // Points into the initializer's bytes (kept alive by `serialized`): no copy.
            p.pointee.raw_data = ProtobufCBinaryData(
                len: t.rawData.count,
                data: UnsafeMutablePointer(mutating: t.rawData.raw.baseAddress?.assumingMemoryBound(to: UInt8.self)))
            return p
        }
        func valueInfo(_ v: OnnxValueInfo) -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
            let p = a.message(Onnx__ValueInfoProto.self, onnx__value_info_proto__init)
            p.pointee.name = a.string(v.name)
            let shape = a.message(Onnx__TensorShapeProto.self, onnx__tensor_shape_proto__init)
            (shape.pointee.n_dim, shape.pointee.dim) = a.array(v.dims.map { d in
                let dim = a.message(Onnx__TensorShapeProto__Dimension.self, onnx__tensor_shape_proto__dimension__init)
                switch d {
                case let .value(x):
                    dim.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                    dim.pointee.dim_value = Int64(x)
                case let .param(s):
                    dim.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                    dim.pointee.dim_param = a.string(s)
                }
                return dim
            })
            let tensorType = a.message(Onnx__TypeProto__Tensor.self, onnx__type_proto__tensor__init)
            tensorType.pointee.has_elem_type = 1
            tensorType.pointee.elem_type = v.elemType
            tensorType.pointee.shape = shape
            let type = a.message(Onnx__TypeProto.self, onnx__type_proto__init)
            type.pointee.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
            type.pointee.tensor_type = tensorType
            p.pointee.type = type
            return p
        }
        (g.pointee.n_input, g.pointee.input) = a.array(inputs.map(valueInfo))
        (g.pointee.n_output, g.pointee.output) = a.array(outputs.map(valueInfo))
        m.pointee.graph = g
        return m
    }

    // MARK: - Parse

    /// Parses ModelProto bytes (protobuf-c unpack). Initializers come back with
    /// their raw_data copied; typed `float_data`/`int64_data` are turned into raw bytes.
    public static func parse(_ bytes: UnsafeRawBufferPointer, file: String = "model.onnx") throws -> OnnxModel {
        try OnnxNesting.check(bytes, file: file)
        guard let base = bytes.baseAddress,
              let m = onnx__model_proto__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw FormatError(.io, "not a valid ONNX ModelProto (protobuf-c could not unpack it)", file: file)
        }
        defer { onnx__model_proto__free_unpacked(m, nil) }
        func str(_ p: UnsafeMutablePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }
        func list<T>(_ n: Int, _ p: UnsafeMutablePointer<T>?) -> [T] { p.map { Array(UnsafeBufferPointer(start: $0, count: n)) } ?? [] }
        var opset = 0
        for o in list(m.pointee.n_opset_import, m.pointee.opset_import) where str(o?.pointee.domain).isEmpty || str(o?.pointee.domain) == "ai.onnx" {
            opset = Int(o?.pointee.version ?? 0)
        }
        var model = OnnxModel(irVersion: Int(m.pointee.ir_version), opset: opset, producerName: str(m.pointee.producer_name),
                              producerVersion: str(m.pointee.producer_version), docString: str(m.pointee.doc_string), graphName: "")
        model.metadata = list(m.pointee.n_metadata_props, m.pointee.metadata_props).compactMap { e in
            e.map { (str($0.pointee.key), str($0.pointee.value)) }
        }
        guard let g = m.pointee.graph else { throw FormatError(.io, "the ONNX model has no graph", file: file) }
        model.graphName = str(g.pointee.name)
        model.nodes = list(g.pointee.n_node, g.pointee.node).compactMap { $0 }.map { n in
            OnnxNode(str(n.pointee.op_type), name: str(n.pointee.name),
                     inputs: list(n.pointee.n_input, n.pointee.input).map(str),
                     outputs: list(n.pointee.n_output, n.pointee.output).map(str),
                     attributes: list(n.pointee.n_attribute, n.pointee.attribute).compactMap { $0 }.compactMap { p in
                         let name = str(p.pointee.name)
                         switch p.pointee.type {
                         case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: return (name, .int(Int(p.pointee.i)))
                         case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS: return (name, .ints(list(p.pointee.n_ints, p.pointee.ints).map { Int($0) }))
                         case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: return (name, .float(p.pointee.f))
                         default: return nil
                         }
                     })
        }
        // Constant nodes' tensors and string attributes (the nodes come in the same order as the C list).
        for (k, n) in list(g.pointee.n_node, g.pointee.node).compactMap({ $0 }).enumerated() {
            let attributes = list(n.pointee.n_attribute, n.pointee.attribute).compactMap { $0 }
            let value = attributes.first { str($0.pointee.name) == "value" && $0.pointee.type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR }
            if let t = value?.pointee.t { model.nodes[k].tensorValue = try tensor(t) }
            model.nodes[k].stringAttributes = attributes.filter { $0.pointee.type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING }.map { p in
                let b = p.pointee.s
                return (str(p.pointee.name), String(decoding: b.len == 0 ? [] : Array(UnsafeBufferPointer(start: b.data, count: b.len)), as: UTF8.self))
            }
        }
        model.initializers = try list(g.pointee.n_initializer, g.pointee.initializer).compactMap { $0 }.map(tensor)
        func tensor(_ t: UnsafeMutablePointer<Onnx__TensorProto>) throws -> OnnxInitializer {
            let name = str(t.pointee.name)
            let dims = list(t.pointee.n_dims, t.pointee.dims).map { Int($0) }
            let raw: Bytes
            var external: OnnxExternalLocation?
            if t.pointee.has_raw_data != 0 {
                let d = t.pointee.raw_data
                raw = Bytes.copying(d.len == 0 ? [] : Array(UnsafeBufferPointer(start: d.data, count: d.len)))
            } else if t.pointee.n_float_data > 0 {
                raw = list(t.pointee.n_float_data, t.pointee.float_data).withUnsafeBytes { OwnedBuffer(copying: $0).bytes }
            } else if t.pointee.n_int64_data > 0 {
                raw = list(t.pointee.n_int64_data, t.pointee.int64_data).withUnsafeBytes { OwnedBuffer(copying: $0).bytes }
            } else if t.pointee.n_external_data > 0 {
                // Recorded, not resolved: OnnxImport.read inlines external data (SECURITY.md 23-24) before parsing.
                var kv: [String: String] = [:]
                for e in list(t.pointee.n_external_data, t.pointee.external_data).compactMap({ $0 }) { kv[str(e.pointee.key)] = str(e.pointee.value) }
                guard let location = kv["location"], let offset = Int(kv["offset"] ?? "0"), let length = Int(kv["length"] ?? "0") else {
                    throw FormatError(.io, "initializer '\(name)' has malformed external_data entries", file: file)
                }
                external = OnnxExternalLocation(location: location, offset: offset, length: length)
                raw = Bytes.copying([])
            } else {
                raw = Bytes.copying([])
            }
            return OnnxInitializer(name: name, dataType: t.pointee.data_type, dims: dims, rawData: raw, external: external)
        }
        func valueInfo(_ v: UnsafeMutablePointer<Onnx__ValueInfoProto>) -> OnnxValueInfo {
            var info = OnnxValueInfo(name: str(v.pointee.name), elemType: 0, dims: [])
            if let type = v.pointee.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
               let tensor = type.pointee.tensor_type {
                info.elemType = tensor.pointee.elem_type
                if let shape = tensor.pointee.shape {
                    info.dims = list(shape.pointee.n_dim, shape.pointee.dim).compactMap { $0 }.map { d in
                        d.pointee.value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                            ? .param(str(d.pointee.dim_param)) : .value(Int(d.pointee.dim_value))
                    }
                }
            }
            return info
        }
        model.inputs = list(g.pointee.n_input, g.pointee.input).compactMap { $0 }.map(valueInfo)
        model.outputs = list(g.pointee.n_output, g.pointee.output).compactMap { $0 }.map(valueInfo)
        return model
    }

    public static func read(path: String) throws -> OnnxModel {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try data.withUnsafeBytes { try parse($0, file: path) }
    }
}

/// C allocations for one serialization, freed together.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    func raw(_ bytes: Int) -> UnsafeMutableRawPointer {
        let p = calloc(1, max(bytes, 1))!
        blocks.append(p)
        return p
    }

    func message<T>(_ type: T.Type, _ initialize: (UnsafeMutablePointer<T>?) -> Void) -> UnsafeMutablePointer<T> {
        let p = raw(MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: 1)
        initialize(p)
        return p
    }

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(s.utf8CString)
        let p = raw(utf8.count).bindMemory(to: CChar.self, capacity: utf8.count)
        p.update(from: utf8, count: utf8.count)
        return p
    }

    func values<T>(_ xs: [T]) -> (Int, UnsafeMutablePointer<T>?) {
        guard !xs.isEmpty else { return (0, nil) }
        let p = raw(MemoryLayout<T>.stride * xs.count).bindMemory(to: T.self, capacity: xs.count)
        p.initialize(from: xs, count: xs.count)
        return (xs.count, p)
    }

    func array<T>(_ xs: [UnsafeMutablePointer<T>]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<T>?>?) {
        values(xs.map { Optional($0) })
    }
}
