// One decoded picture: packed RGB24, row-major, no padding between rows.

/// A frame as 8-bit RGB, `height` rows of `width * 3` bytes.
public struct RGBFrame: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGBFrame: \(pixels.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A frame filled with one colour.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { p[3 * i] = fill.0; p[3 * i + 1] = fill.1; p[3 * i + 2] = fill.2 }
        self.init(width: width, height: height, pixels: p)
    }

    /// The (r, g, b) at column x, row y.
    public func pixel(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let o = (y * width + x) * 3
        return (pixels[o], pixels[o + 1], pixels[o + 2])
    }
}

/// What a source knows before decoding: size, frame count and rate.
public struct VideoInfo: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// Frames in the video (exact: from the container or counted from packets).
    public let frameCount: Int
    /// Frames per second of the source (average frame rate).
    public let fps: Double
    /// Codec name (e.g. "h264", "mpeg4", "vp9", "png").
    public let codec: String

    public var durationSeconds: Double { Double(frameCount) / fps }
}
