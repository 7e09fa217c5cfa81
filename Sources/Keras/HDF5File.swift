// Reads the weights of a Keras HDF5 file through libhdf5's C API. Runs only in the
// worker process (`sfnet _hdf5-worker`, see HDF5Worker.swift): libhdf5 1.10 crashes
// on many malformed files.
//
// Only groups, the string attributes `layer_names`/`weight_names` (and a `.weights.h5`
// vars group's `name`) and float datasets are read. The `model_config` attribute is
// never opened: it may hold Lambda layers or bytecode (SECURITY.md 27). Links other
// than hard links (soft, external), datasets stored in external files or as virtual
// datasets, and filter plugins are refused, so nothing outside the file is read.

import CHDF5
import Foundation
import Formats

enum HDF5File {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Reads `path`. Throws `Failure` describing where the file left the expected shape.
    static func read(path: String, limits: KerasLimits) throws -> KerasWeights {
        H5Eset_auto2(sfnet_h5e_default(), nil, nil)   // errors come back as values, not stack dumps
        H5PLset_loading_state(0)                      // never load filter plugins
        let file = H5Fopen(path, sfnet_h5f_acc_rdonly(), sfnet_h5p_default())
        guard file >= 0 else { throw Failure(description: "libhdf5 cannot open it as an HDF5 file") }
        defer { H5Fclose(file) }
        var reader = Reader(limits: limits)

        if let names = try reader.stringListAttribute(file, "layer_names") {
            return try reader.layerNames(group: file, where: "/", names: names)
        }
        if try reader.hasHardLink(file, "model_weights") {
            let g = try reader.openGroup(file, "model_weights", where: "/")
            defer { H5Gclose(g) }
            guard let names = try reader.stringListAttribute(g, "layer_names") else {
                throw Failure(description: "/model_weights has no layer_names attribute")
            }
            return try reader.layerNames(group: g, where: "/model_weights/", names: names)
        }
        if try reader.hasHardLink(file, "layers") {
            return try reader.weightsH5(file)
        }
        throw Failure(description: "no layer_names attribute on / or /model_weights and no /layers group: not a Keras weights file")
    }

    struct Reader {
        let limits: KerasLimits
        var totalBytes = 0

        init(limits: KerasLimits) { self.limits = limits }

        // MARK: Keras 2 layout

        mutating func layerNames(group: hid_t, where base: String, names: [String]) throws -> KerasWeights {
            guard names.count <= limits.maxLayers else { throw Failure(description: "\(names.count) layers, limit \(limits.maxLayers)") }
            var layers: [KerasLayer] = []
            var weightless = 0
            var seen = Set<String>()
            for name in names {
                guard seen.insert(name).inserted else { throw Failure(description: "layer '\(name)' listed twice in layer_names") }
                let g = try openGroup(group, name, where: base)
                defer { H5Gclose(g) }
                let weightNames = try stringListAttribute(g, "weight_names") ?? []
                guard weightNames.count <= limits.maxWeightsPerLayer else {
                    throw Failure(description: "\(base)\(name): \(weightNames.count) weights, limit \(limits.maxWeightsPerLayer)")
                }
                if weightNames.isEmpty { weightless += 1; continue }
                var weights: [(name: String, tensor: Tensor)] = []
                for w in weightNames {
                    weights.append((w, try dataset(g, w, where: base + name + "/")))
                }
                layers.append(KerasLayer(name: name, weights: weights))
            }
            return KerasWeights(layout: .layerNames, layers: layers, weightlessLayers: weightless)
        }

        // MARK: Keras 3 `.weights.h5`

        mutating func weightsH5(_ file: hid_t) throws -> KerasWeights {
            let root = try openGroup(file, "layers", where: "/")
            defer { H5Gclose(root) }
            var layers: [KerasLayer] = []
            var weightless = 0
            var seen = Set<String>()
            for child in try linkNames(root, where: "/layers/") {
                let g = try openGroup(root, child, where: "/layers/")
                defer { H5Gclose(g) }
                guard try hasHardLink(g, "vars") else { weightless += 1; continue }
                let vars = try openGroup(g, "vars", where: "/layers/\(child)/")
                defer { H5Gclose(vars) }
                let at = "/layers/\(child)/vars/"
                // Keras names the group after the layer's class; the layer's own name is an attribute.
                let name = try stringListAttribute(vars, "name")?.first ?? child
                let count = try linkNames(vars, where: at).count
                guard count <= limits.maxWeightsPerLayer else { throw Failure(description: "\(at): \(count) vars, limit \(limits.maxWeightsPerLayer)") }
                if count == 0 { weightless += 1; continue }
                guard seen.insert(name).inserted else { throw Failure(description: "\(at): layer name '\(name)' used twice") }
                var weights: [(name: String, tensor: Tensor)] = []
                for i in 0 ..< count {
                    weights.append((String(i), try dataset(vars, String(i), where: at)))
                }
                layers.append(KerasLayer(name: name, weights: weights))
            }
            return KerasWeights(layout: .weightsH5, layers: layers, weightlessLayers: weightless)
        }

        // MARK: Links and groups

        func hasHardLink(_ loc: hid_t, _ name: String) throws -> Bool {
            switch sfnet_h5_is_hard_link(loc, name) {
            case 1: return true
            case 0: throw Failure(description: "'\(name)' is a soft or external link; only hard links are followed")
            default: return false
            }
        }

        /// Opens the group at `path` (relative, `/`-separated) below `loc`, every component a hard link.
        func openGroup(_ loc: hid_t, _ path: String, where base: String) throws -> hid_t {
            try checkPath(loc, path, where: base)
            let g = H5Gopen2(loc, path, sfnet_h5p_default())
            guard g >= 0 else { throw Failure(description: "\(base)\(path) is not a group") }
            return g
        }

        /// Every prefix of `path` must exist as a hard link.
        func checkPath(_ loc: hid_t, _ path: String, where base: String) throws {
            guard path.utf8.count <= limits.maxNameBytes else {
                throw Failure(description: "\(base): object name of \(path.utf8.count) bytes, name limit \(limits.maxNameBytes)")
            }
            guard !path.isEmpty, !path.hasPrefix("/"), !path.contains("\0") else {
                throw Failure(description: "\(base): invalid object name '\(path.prefix(80))'")
            }
            var prefix = ""
            for part in path.split(separator: "/", omittingEmptySubsequences: false) {
                guard !part.isEmpty, part != ".", part != ".." else { throw Failure(description: "\(base): invalid object name '\(path)'") }
                prefix += (prefix.isEmpty ? "" : "/") + part
                guard try hasHardLink(loc, prefix) else { throw Failure(description: "\(base)\(prefix) does not exist") }
            }
        }

        /// Names of the links in group `g`, bounded.
        func linkNames(_ g: hid_t, where base: String) throws -> [String] {
            var info = H5G_info_t()
            guard H5Gget_info(g, &info) >= 0 else { throw Failure(description: "\(base): cannot list the group") }
            guard info.nlinks <= UInt64(limits.maxLayers) else { throw Failure(description: "\(base): \(info.nlinks) links, limit \(limits.maxLayers)") }
            var names: [String] = []
            for i in 0 ..< info.nlinks {
                let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, sfnet_h5p_default())
                guard n <= limits.maxNameBytes else { throw Failure(description: "\(base): link \(i) name of \(n) bytes, name limit \(limits.maxNameBytes)") }
                guard n > 0 else { throw Failure(description: "\(base): link \(i) has no valid name") }
                var buf = [CChar](repeating: 0, count: n + 1)
                guard H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, n + 1, sfnet_h5p_default()) == n else {
                    throw Failure(description: "\(base): link \(i) has no valid name")
                }
                names.append(String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            return names
        }

        // MARK: Attributes

        /// A string (or string array) attribute; nil when absent. Also reads Keras's chunked
        /// form (`layer_names0`, `layer_names1`, ...) used when a list outgrew the header.
        /// An empty array of any type (Keras writes `weight_names` of weightless layers as
        /// an empty float array) is an empty list.
        func stringListAttribute(_ loc: hid_t, _ name: String) throws -> [String]? {
            if H5Aexists(loc, name) > 0 { return try readStrings(loc, name) }
            guard H5Aexists(loc, name + "0") > 0 else { return nil }
            var out: [String] = []
            var k = 0
            while H5Aexists(loc, "\(name)\(k)") > 0 {
                out += try readStrings(loc, "\(name)\(k)")
                guard out.count <= limits.maxLayers, k < limits.maxLayers else { throw Failure(description: "attribute \(name): too many entries") }
                k += 1
            }
            return out
        }

        func readStrings(_ loc: hid_t, _ name: String) throws -> [String] {
            let attr = H5Aopen(loc, name, sfnet_h5p_default())
            guard attr >= 0 else { throw Failure(description: "attribute \(name) cannot be opened") }
            defer { H5Aclose(attr) }
            let space = H5Aget_space(attr)
            guard space >= 0 else { throw Failure(description: "attribute \(name) has no dataspace") }
            defer { H5Sclose(space) }
            let count = H5Sget_simple_extent_npoints(space)
            let rank = H5Sget_simple_extent_ndims(space)
            guard count <= Int64(limits.maxLayers) else { throw Failure(description: "attribute \(name): \(count) elements, limit \(limits.maxLayers)") }
            guard count >= 0, rank >= 0, rank <= 1 else {
                throw Failure(description: "attribute \(name) has \(count) elements of rank \(rank)")
            }
            if count == 0 { return [] }
            let ftype = H5Aget_type(attr)
            guard ftype >= 0 else { throw Failure(description: "attribute \(name) has no type") }
            defer { H5Tclose(ftype) }
            guard H5Tget_class(ftype) == H5T_STRING else { throw Failure(description: "attribute \(name) is not a string attribute") }
            let n = Int(count)
            let mtype = H5Tcopy(sfnet_h5t_c_s1())
            guard mtype >= 0 else { throw Failure(description: "attribute \(name): no string type") }
            defer { H5Tclose(mtype) }
            H5Tset_cset(mtype, H5Tget_cset(ftype))   // libhdf5 converts no ASCII <-> UTF-8
            var out: [String] = []
            if H5Tis_variable_str(ftype) > 0 {
                H5Tset_size(mtype, sfnet_h5t_variable())
                var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
                guard H5Aread(attr, mtype, &ptrs) >= 0 else { throw Failure(description: "attribute \(name) cannot be read") }
                defer { H5Dvlen_reclaim(mtype, space, sfnet_h5p_default(), &ptrs) }
                for p in ptrs {
                    guard let p else { throw Failure(description: "attribute \(name) holds a null string") }
                    let len = strnlen(p, limits.maxNameBytes + 1)
                    guard len <= limits.maxNameBytes else { throw Failure(description: "attribute \(name) holds a string over the name limit \(limits.maxNameBytes)") }
                    out.append(String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self))
                }
            } else {
                let size = H5Tget_size(ftype)
                guard size <= limits.maxNameBytes else { throw Failure(description: "attribute \(name) has strings of \(size) bytes, name limit \(limits.maxNameBytes)") }
                guard size > 0 else { throw Failure(description: "attribute \(name) has strings of \(size) bytes") }
                H5Tset_size(mtype, size)
                // Null-padded, not null-terminated: a name that fills its field (the longest of
                // a Keras 2 `layer_names` array, written by h5py as fixed-length NULLPAD) keeps
                // its last byte; C_S1's NULLTERM would overwrite it with the terminator.
                H5Tset_strpad(mtype, H5T_STR_NULLPAD)
                var buf = [UInt8](repeating: 0, count: n * size)
                guard H5Aread(attr, mtype, &buf) >= 0 else { throw Failure(description: "attribute \(name) cannot be read") }
                for i in 0 ..< n {
                    let s = buf[i * size ..< (i + 1) * size]
                    out.append(String(decoding: s.prefix { $0 != 0 }, as: UTF8.self))
                }
            }
            return out
        }

        // MARK: Datasets

        /// The float dataset at `path` below `loc` as float32, after checking its type,
        /// storage and size against the limits (before anything is allocated).
        mutating func dataset(_ loc: hid_t, _ path: String, where base: String) throws -> Tensor {
            let at = base + path
            try checkPath(loc, path, where: base)
            let d = H5Dopen2(loc, path, sfnet_h5p_default())
            guard d >= 0 else { throw Failure(description: "\(at) is not a dataset") }
            defer { H5Dclose(d) }
            let type = H5Dget_type(d)
            guard type >= 0 else { throw Failure(description: "\(at) has no type") }
            defer { H5Tclose(type) }
            let size = H5Tget_size(type)
            guard H5Tget_class(type) == H5T_FLOAT, [2, 4, 8].contains(size) else {
                throw Failure(description: "\(at) is not a float dataset (class \(H5Tget_class(type).rawValue), \(size) bytes)")
            }
            let dcpl = H5Dget_create_plist(d)
            guard dcpl >= 0 else { throw Failure(description: "\(at) has no creation properties") }
            defer { H5Pclose(dcpl) }
            let layout = H5Pget_layout(dcpl)
            guard [H5D_COMPACT, H5D_CONTIGUOUS, H5D_CHUNKED].contains(layout) else {
                throw Failure(description: "\(at) has storage layout \(layout.rawValue) (virtual or unknown); only data inside the file is read")
            }
            guard H5Pget_external_count(dcpl) == 0 else { throw Failure(description: "\(at) keeps its data in an external file; refused") }
            let space = H5Dget_space(d)
            guard space >= 0 else { throw Failure(description: "\(at) has no dataspace") }
            defer { H5Sclose(space) }
            let rank = Int(H5Sget_simple_extent_ndims(space))
            guard rank <= limits.maxRank else { throw Failure(description: "\(at) has rank \(rank), rank limit \(limits.maxRank)") }
            guard rank >= 1 else { throw Failure(description: "\(at) has rank \(rank)") }
            var dims = [hsize_t](repeating: 0, count: rank)
            guard H5Sget_simple_extent_dims(space, &dims, nil) == rank else { throw Failure(description: "\(at): cannot read its dims") }
            var numel = 1
            for dim in dims {
                guard dim >= 1 else { throw Failure(description: "\(at) has dims \(dims)") }
                guard dim <= UInt64(limits.maxElements) else { throw Failure(description: "\(at): dims \(dims) exceed \(limits.maxElements) elements") }
                let (p, o) = numel.multipliedReportingOverflow(by: Int(dim))
                guard !o, p <= limits.maxElements else { throw Failure(description: "\(at): dims \(dims) exceed \(limits.maxElements) elements") }
                numel = p
            }
            totalBytes += numel * 4
            guard totalBytes <= limits.maxTotalBytes else { throw Failure(description: "\(at): tensors exceed \(limits.maxTotalBytes) bytes in all") }
            let buf = OwnedBuffer(count: numel * 4)
            guard H5Dread(d, sfnet_h5t_native_float(), sfnet_h5s_all(), sfnet_h5s_all(), sfnet_h5p_default(), buf.pointer) >= 0 else {
                throw Failure(description: "\(at): its data cannot be read")
            }
            return Tensor(dtype: .f32, shape: dims.map { Int($0) }, data: buf.bytes)
        }
    }
}
