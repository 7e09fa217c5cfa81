// The state of a training run that --resume needs besides weights and
// optimizer buffers: where it is (epoch, iteration), the random streams, the
// best validation mAP so far, the per-epoch history and the configuration.
// Stored as JSON in a checkpoint's `sfnet.train_state` metadata.

import Foundation

/// The hyperparameters a run was started with.
public struct TrainConfig: Codable, Sendable, Equatable {
    public var epochs: Int
    public var batchSize: Int
    /// Optimizer steps per epoch (the schedule's fractional epoch is iteration / itersPerEpoch).
    public var itersPerEpoch: Int
    public var loss: LossKind
    public var labelSmoothing: Float
    public var sgd: SGDConfig
    public var schedule: LRSchedule
    public var seed: UInt64
    /// The caller's other settings (data manifests, frames, crop, freeze patterns, weights file...).
    public var options: [String: String]

    /// The study's recipe: 20 epochs of batch 8, BCE, SGD momentum 0.9 nesterov, weight decay 1e-4
    /// (none on BN/biases), warm-up 0.00085 -> 0.0375 over 5 epochs then constant.
    public init(epochs: Int = 20, batchSize: Int = 8, itersPerEpoch: Int, loss: LossKind = .bce, labelSmoothing: Float = 0,
                sgd: SGDConfig = SGDConfig(), schedule: LRSchedule? = nil, seed: UInt64 = 0, options: [String: String] = [:]) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.itersPerEpoch = itersPerEpoch
        self.loss = loss
        self.labelSmoothing = labelSmoothing
        self.sgd = sgd
        self.schedule = schedule ?? LRSchedule.study(maxEpochs: Double(epochs))
        self.seed = seed
        self.options = options
    }

    public func validate() throws {
        func bad(_ what: String, _ msg: String) -> TrainError { TrainError(.invalidArgument, msg, at: "option \(what)") }
        guard epochs > 0 else { throw bad("epochs", "epochs must be positive, not \(epochs)") }
        guard batchSize > 0 else { throw bad("batch", "batch size must be positive, not \(batchSize)") }
        guard itersPerEpoch > 0 else { throw bad("batch", "an epoch must hold at least one step (\(itersPerEpoch) iterations per epoch)") }
        guard labelSmoothing >= 0 && labelSmoothing < 1 else { throw bad("label-smoothing", "label smoothing \(labelSmoothing) must be in [0, 1)") }
        try sgd.validate()
        try schedule.validate()
    }

    /// The learning rate of global step `iteration` (0-based, counted over all epochs).
    public func lr(atIteration iteration: Int) -> Double {
        schedule.lr(epoch: iteration / itersPerEpoch, iteration: iteration % itersPerEpoch, itersPerEpoch: itersPerEpoch)
    }
}

/// What one epoch gave, for metrics.json / reports.
public struct EpochRecord: Codable, Sendable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var lr: Double
    public var valMAP: Double?
    public var valTop1: Double?
    public var seconds: Double

    public init(epoch: Int, trainLoss: Double, lr: Double, valMAP: Double? = nil, valTop1: Double? = nil, seconds: Double) {
        self.epoch = epoch
        self.trainLoss = trainLoss
        self.lr = lr
        self.valMAP = valMAP
        self.valTop1 = valTop1
        self.seconds = seconds
    }
}

/// The state of a random stream as 64-bit words (JSON: hex strings, since JSON numbers lose bits above 2^53).
public struct RNGState: Codable, Sendable, Equatable {
    public var words: [UInt64]
    public init(_ words: [UInt64]) { self.words = words }

    public init(from decoder: Decoder) throws {
        let texts = try decoder.singleValueContainer().decode([String].self)
        words = try texts.map {
            guard let w = UInt64($0, radix: 16) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\($0.prefix(20))' is not a 64-bit hex word"))
            }
            return w
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(words.map { String($0, radix: 16) })
    }
}

public struct TrainState: Codable, Sendable, Equatable {
    public static let currentFormat = 1
    public var format: Int = TrainState.currentFormat
    /// Epochs completed: the 0-based epoch a resumed run starts with.
    public var epoch: Int
    /// Optimizer steps taken over all epochs.
    public var iteration: Int
    /// Random streams by purpose ("data", "augment", "dropout"...).
    public var rng: [String: RNGState]
    public var bestMAP: Double?
    public var bestEpoch: Int?
    public var history: [EpochRecord]
    public var config: TrainConfig

    public init(epoch: Int = 0, iteration: Int = 0, rng: [String: RNGState] = [:], bestMAP: Double? = nil, bestEpoch: Int? = nil,
                history: [EpochRecord] = [], config: TrainConfig) {
        self.epoch = epoch
        self.iteration = iteration
        self.rng = rng
        self.bestMAP = bestMAP
        self.bestEpoch = bestEpoch
        self.history = history
        self.config = config
    }

    /// Whether every epoch of the configuration has run.
    public var isFinished: Bool { epoch >= config.epochs }

    public func json() -> String { SGD.encodeJSON(self) }

    /// The largest epoch, iteration or per-epoch count a checkpoint may record (2^40).
    public static let maxCount = 1 << 40

    public static func decode(json text: String, what: String = "metadata '\(TrainCheckpoint.stateKey)'") throws -> TrainState {
        let s: TrainState = try SGD.decodeJSON(text, what: what)
        guard s.format == currentFormat else {
            throw TrainError(.malformed, "train state format \(s.format); this sfnet reads format \(currentFormat)", at: what)
        }
        guard s.epoch >= 0, s.iteration >= 0 else { throw TrainError(.malformed, "negative epoch \(s.epoch) or iteration \(s.iteration)", at: what) }
        // Bounded so a resumed run's counters (epoch + 1, iteration + 1, iteration / itersPerEpoch) cannot overflow.
        guard s.epoch <= maxCount, s.iteration <= maxCount, s.config.epochs <= maxCount, s.config.itersPerEpoch <= maxCount,
              s.config.batchSize <= maxCount else {
            throw TrainError(.malformed, "epoch \(s.epoch), iteration \(s.iteration), epochs \(s.config.epochs), iterations per epoch "
                + "\(s.config.itersPerEpoch) or batch \(s.config.batchSize) past \(maxCount)", at: what)
        }
        return s
    }
}

/// xoshiro256** (Blackman, Vigna 2018) seeded by SplitMix64: a generator whose whole state
/// can be saved in a checkpoint and restored, so a resumed run draws the same numbers.
public struct TrainRNG: RandomNumberGenerator, Sendable, Equatable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public init(state: RNGState) throws {
        guard state.words.count == 4, state.words.contains(where: { $0 != 0 }) else {
            throw TrainError(.malformed, "an RNG state is 4 words, not all zero; got \(state.words.count) words", at: "train state rng")
        }
        s = (state.words[0], state.words[1], state.words[2], state.words[3])
    }

    public var state: RNGState { RNGState([s.0, s.1, s.2, s.3]) }

    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public static func == (a: TrainRNG, b: TrainRNG) -> Bool { a.state == b.state }
}
