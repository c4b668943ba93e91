// The only file that calls librabbitmq. An `AMQPConnection` is used by one thread at a time: the
// publisher's or a consumer's own thread, never Swift's concurrency pool, since every call blocks.
import CRabbitMQ
import Foundation

/// An error from the broker or from librabbitmq; any of them ends the connection it came from.
struct AMQPError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What a received message carries.
struct ReceivedMessage {
    var exchange: String
    var routingKey: String
    var deliveryTag: UInt64
    var redelivered: Bool
    var messageID: String?
    var type: String?
    var headers: [String: String]
    var body: [UInt8]
    /// The `user-id` property: the broker checks it against the publisher's login.
    var userID: String?
}

/// A publisher confirm from the broker: `multiple` covers every tag up to and including `tag`;
/// or a mandatory message the broker returned because no queue was bound to take it (its
/// confirm follows).
enum ConfirmEvent: Equatable {
    case ack(tag: UInt64, multiple: Bool)
    case nack(tag: UInt64, multiple: Bool)
    case returned(messageID: String, routingKey: String)
}

/// What waiting on a connection's socket and its wake-up descriptor found.
enum Readiness {
    case readable
    case woken
    case timedOut
}

/// Method ids and flags of AMQP 0-9-1, as `amqp_framing.h` defines them with casts Swift does not import.
private enum Wire {
    static let frameMethod: UInt8 = 1
    static let connectionClose: amqp_method_number_t = 0x000A_0032
    static let connectionCloseOk: amqp_method_number_t = 0x000A_0033
    static let channelClose: amqp_method_number_t = 0x0014_0028
    static let channelCloseOk: amqp_method_number_t = 0x0014_0029
    static let basicCancel: amqp_method_number_t = 0x003C_001E
    static let basicReturn: amqp_method_number_t = 0x003C_0032
    static let basicAck: amqp_method_number_t = 0x003C_0050
    static let basicNack: amqp_method_number_t = 0x003C_0078
    static let replySuccess: Int32 = 200
    static let contentTypeFlag: amqp_flags_t = 1 << 15
    static let headersFlag: amqp_flags_t = 1 << 13
    static let deliveryModeFlag: amqp_flags_t = 1 << 12
    static let messageIDFlag: amqp_flags_t = 1 << 7
    static let timestampFlag: amqp_flags_t = 1 << 6
    static let typeFlag: amqp_flags_t = 1 << 5
    static let userIDFlag: amqp_flags_t = 1 << 4
    static let persistent: UInt8 = 2
}

/// A wake-up signal another thread can raise while this one waits in `poll`.
final class WakeSignal: @unchecked Sendable {
    let fd: Int32

    init() {
        fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(fd >= 0, "eventfd failed: \(errno)")
    }

    deinit { close(fd) }

    func raise() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    func drain() {
        var value: UInt64 = 0
        _ = read(fd, &value, 8)
    }

    /// Waits until raised or `timeout` passes; for threads that have no connection to watch.
    func wait(timeout: Duration) {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        _ = poll(&fds, 1, Int32(timeout / .milliseconds(1)))
        drain()
    }
}

/// A value of a queue's declared arguments.
enum QueueArgument: Equatable {
    case string(String)
    case integer(Int64)
}

/// Owns the C strings and tables handed to one librabbitmq call, and frees them afterwards.
private final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { blocks.forEach { free($0) } }

    func bytes(_ string: String) -> amqp_bytes_t { bytes(Array(string.utf8)) }

    func bytes(_ data: [UInt8]) -> amqp_bytes_t {
        let block = malloc(max(data.count, 1))!
        data.withUnsafeBytes { block.copyMemory(from: $0.baseAddress!, byteCount: data.count) }
        blocks.append(block)
        return amqp_bytes_t(len: data.count, bytes: block)
    }

    func table(_ entries: [(String, String)]) -> amqp_table_t {
        table(entries.map { ($0.0, QueueArgument.string($0.1)) })
    }

    func table(_ entries: [(String, QueueArgument)]) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_empty_table }
        let block = malloc(MemoryLayout<amqp_table_entry_t>.stride * entries.count)!
        blocks.append(block)
        let table = block.bindMemory(to: amqp_table_entry_t.self, capacity: entries.count)
        for (index, (key, value)) in entries.enumerated() {
            var field = amqp_field_value_t()
            switch value {
            case .string(let text):
                field.kind = UInt8(ascii: "S")
                field.value.bytes = bytes(text)
            case .integer(let number):
                field.kind = UInt8(ascii: "l")
                field.value.i64 = number
            }
            table[index] = amqp_table_entry_t(key: bytes(key), value: field)
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: table)
    }
}

final class AMQPConnection {
    private var state: amqp_connection_state_t?
    private let channel: amqp_channel_t = 1
    private var broken = false
    /// The user this connection logged in as, stamped on every publish as `user-id`.
    private let user: String

    /// Opens a TCP connection, logs in and opens channel 1.
    /// - Parameters:
    ///   - heartbeat: seconds between heartbeats; librabbitmq sends them while the owner reads.
    ///   - timeout: for the TCP connect.
    init(endpoint: AMQPEndpoint, heartbeat: Int32, timeout: Duration) throws(AMQPError) {
        user = endpoint.user
        guard let state = amqp_new_connection() else { throw AMQPError("out of memory") }
        self.state = state
        let socket: OpaquePointer?
        if endpoint.tls {
            // TLS, verifying the broker's certificate against the given authorities (or the
            // system's) and its name against the host connected to.
            socket = amqp_ssl_socket_new(state)
            if let socket {
                amqp_ssl_socket_set_verify_peer(socket, 1)
                amqp_ssl_socket_set_verify_hostname(socket, 1)
                if let authorities = endpoint.caCertificate {
                    let status = amqp_ssl_socket_set_cacert(socket, authorities)
                    guard status == AMQP_STATUS_OK.rawValue else {
                        close()
                        throw AMQPError("cannot read the certificate authorities in \(authorities): \(String(cString: amqp_error_string2(status)))")
                    }
                }
            }
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else {
            close()
            throw AMQPError("cannot create a \(endpoint.tls ? "TLS" : "TCP") socket")
        }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        let status = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &tv)
        if status != AMQP_STATUS_OK.rawValue {
            close()
            throw AMQPError("cannot connect to \(endpoint.host):\(endpoint.port): \(String(cString: amqp_error_string2(status)))")
        }
        do {
            try check(
                drover_amqp_login_plain(state, endpoint.vhost, 0, 131_072, heartbeat, endpoint.user, endpoint.password),
                "login as \(endpoint.user)")
            amqp_channel_open(state, channel)
            try check(amqp_get_rpc_reply(state), "channel.open")
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Closes politely when the connection still works, and frees it in any case.
    func close() {
        guard let state else { return }
        if !broken {
            amqp_channel_close(state, channel, Wire.replySuccess)
            amqp_connection_close(state, Wire.replySuccess)
        }
        amqp_destroy_connection(state)
        self.state = nil
    }

    // MARK: Topology

    /// Declares a durable exchange; `passive` only checks that it exists (which needs no
    /// permission to configure it).
    func declareExchange(_ name: String, type: String, passive: Bool = false) throws(AMQPError) {
        let arena = CArena()
        amqp_exchange_declare(state, channel, arena.bytes(name), arena.bytes(type), passive ? 1 : 0, 1, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "exchange.declare \(name)")
    }

    func declareQueue(_ name: String, arguments: [(String, QueueArgument)]) throws(AMQPError) {
        let arena = CArena()
        amqp_queue_declare(state, channel, arena.bytes(name), 0, 1, 0, 0, arena.table(arguments))
        try check(amqp_get_rpc_reply(state), "queue.declare \(name)")
    }

    /// How many messages queue `name` holds, asked with a passive declare (which needs no
    /// permission to configure it, and fails if it does not exist).
    func messageCount(of name: String) throws(AMQPError) -> UInt32 {
        let arena = CArena()
        let ok = amqp_queue_declare(state, channel, arena.bytes(name), 1, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "queue.declare passive \(name)")
        return ok?.pointee.message_count ?? 0
    }

    func bindQueue(_ queue: String, exchange: String, pattern: String) throws(AMQPError) {
        let arena = CArena()
        amqp_queue_bind(state, channel, arena.bytes(queue), arena.bytes(exchange), arena.bytes(pattern), amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "queue.bind \(queue) to \(exchange) with \(pattern)")
    }

    func enableConfirms() throws(AMQPError) {
        amqp_confirm_select(state, channel)
        try check(amqp_get_rpc_reply(state), "confirm.select")
    }

    func startConsuming(_ queue: String, prefetch: UInt16) throws(AMQPError) {
        let arena = CArena()
        amqp_basic_qos(state, channel, 0, prefetch, 0)
        try check(amqp_get_rpc_reply(state), "basic.qos")
        amqp_basic_consume(state, channel, arena.bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "basic.consume \(queue)")
    }

    // MARK: Publishing

    /// Sends one persistent message; with confirms on, its confirm tag is the count of publishes
    /// so far. A `mandatory` one that no queue takes comes back as ``ConfirmEvent/returned(messageID:routingKey:)``.
    func publish(_ message: OutgoingMessage, defaultExchange: String, mandatory: Bool) throws(AMQPError) {
        let arena = CArena()
        var properties = amqp_basic_properties_t()
        properties._flags =
            Wire.contentTypeFlag | Wire.deliveryModeFlag | Wire.messageIDFlag | Wire.typeFlag | Wire.timestampFlag
            | Wire.headersFlag | Wire.userIDFlag
        properties.user_id = arena.bytes(user)
        properties.content_type = arena.bytes("application/json")
        properties.delivery_mode = Wire.persistent
        properties.message_id = arena.bytes(message.messageID)
        properties.type = arena.bytes(message.type)
        properties.timestamp = UInt64(max(0, message.timestamp.timeIntervalSince1970))
        var headers = message.headers.sorted { $0.key < $1.key }
        headers.append(("x-schema-version", String(message.schemaVersion)))
        if let traceparent = message.traceparent { headers.append(("traceparent", traceparent)) }
        properties.headers = arena.table(headers)
        let exchange = arena.bytes(message.exchange ?? defaultExchange)
        let routingKey = arena.bytes(message.routingKey)
        let status = message.body.withUnsafeBytes { body in
            amqp_basic_publish(
                state, channel, exchange, routingKey, mandatory ? 1 : 0, 0, &properties,
                amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
        }
        try check(status, "basic.publish to \(message.routingKey)")
    }

    /// The next publisher confirm already received, or `nil` when none is waiting.
    func nextConfirm() throws(AMQPError) -> ConfirmEvent? {
        while true {
            guard let frame = try nextFrame() else { return nil }
            guard frame.frame_type == Wire.frameMethod else { continue }
            switch frame.payload.method.id {
            case Wire.basicAck:
                let ack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
                return .ack(tag: ack.delivery_tag, multiple: ack.multiple != 0)
            case Wire.basicNack:
                let nack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
                return .nack(tag: nack.delivery_tag, multiple: nack.multiple != 0)
            case Wire.basicReturn:
                let returned = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
                let routingKey = string(returned.routing_key)
                // The returned message's header and body frames follow at once; read them.
                var message = amqp_message_t()
                try check(amqp_read_message(state, channel, &message, 0), "reading a returned message")
                defer { amqp_destroy_message(&message) }
                let properties = message.properties
                let id = properties._flags & Wire.messageIDFlag != 0 ? string(properties.message_id) : ""
                return .returned(messageID: id, routingKey: routingKey)
            default:
                try handleUnexpected(frame)
            }
        }
    }

    // MARK: Consuming

    /// The next delivery already received, or `nil` when none is waiting.
    func nextDelivery() throws(AMQPError) -> ReceivedMessage? {
        guard let state else { throw AMQPError("connection is closed") }
        amqp_maybe_release_buffers(state)
        var envelope = amqp_envelope_t()
        var immediately = timeval(tv_sec: 0, tv_usec: 0)
        let reply = amqp_consume_message(state, &envelope, &immediately, 0)
        if reply.reply_type == AMQP_RESPONSE_NORMAL {
            defer { amqp_destroy_envelope(&envelope) }
            let properties = envelope.message.properties
            return ReceivedMessage(
                exchange: string(envelope.exchange), routingKey: string(envelope.routing_key), deliveryTag: envelope.delivery_tag,
                redelivered: envelope.redelivered != 0,
                messageID: properties._flags & Wire.messageIDFlag != 0 ? string(properties.message_id) : nil,
                type: properties._flags & Wire.typeFlag != 0 ? string(properties.type) : nil,
                headers: properties._flags & Wire.headersFlag != 0 ? headers(properties.headers) : [:],
                body: Array(UnsafeRawBufferPointer(start: envelope.message.body.bytes, count: envelope.message.body.len)),
                userID: properties._flags & Wire.userIDFlag != 0 ? string(properties.user_id) : nil)
        }
        if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION {
            if reply.library_error == AMQP_STATUS_TIMEOUT.rawValue { return nil }
            if reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue {
                // Not a delivery: librabbitmq put the frame back; read it and see what the broker said.
                if let frame = try nextFrame(), frame.frame_type == Wire.frameMethod { try handleUnexpected(frame) }
                return nil
            }
        }
        try check(reply, "basic.consume")
        return nil
    }

    func ack(_ tag: UInt64, multiple: Bool) throws(AMQPError) {
        try check(amqp_basic_ack(state, channel, tag, multiple ? 1 : 0), "basic.ack")
    }

    func requeue(_ tag: UInt64) throws(AMQPError) {
        try check(amqp_basic_nack(state, channel, tag, 0, 1), "basic.nack")
    }

    func reject(_ tag: UInt64) throws(AMQPError) {
        try check(amqp_basic_reject(state, channel, tag, 0), "basic.reject")
    }

    // MARK: Waiting

    /// Waits until the broker has sent something, `wake` is raised, or `timeout` passes.
    func waitReadable(wake: WakeSignal, timeout: Duration) -> Readiness {
        guard let state else { return .readable }
        if amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 { return .readable }
        var fds = [
            pollfd(fd: amqp_get_sockfd(state), events: Int16(POLLIN), revents: 0),
            pollfd(fd: wake.fd, events: Int16(POLLIN), revents: 0),
        ]
        let count = poll(&fds, 2, Int32(timeout / .milliseconds(1)))
        guard count > 0 else { return .timedOut }
        if fds[1].revents != 0 { wake.drain() }
        return fds[0].revents != 0 ? .readable : .woken
    }

    // MARK: Internals

    private func nextFrame() throws(AMQPError) -> amqp_frame_t? {
        guard let state else { throw AMQPError("connection is closed") }
        var frame = amqp_frame_t()
        var immediately = timeval(tv_sec: 0, tv_usec: 0)
        let status = amqp_simple_wait_frame_noblock(state, &frame, &immediately)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
        try check(status, "reading a frame")
        return frame
    }

    /// Answers a close from the broker and throws its reason; ignores other methods.
    private func handleUnexpected(_ frame: amqp_frame_t) throws(AMQPError) {
        switch frame.payload.method.id {
        case Wire.channelClose:
            let close = frame.payload.method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            var ok = amqp_channel_close_ok_t()
            amqp_send_method(state, channel, Wire.channelCloseOk, &ok)
            broken = true
            throw AMQPError("the broker closed the channel: \(close.reply_code) \(string(close.reply_text))")
        case Wire.connectionClose:
            let close = frame.payload.method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            var ok = amqp_connection_close_ok_t()
            amqp_send_method(state, 0, Wire.connectionCloseOk, &ok)
            broken = true
            throw AMQPError("the broker closed the connection: \(close.reply_code) \(string(close.reply_text))")
        case Wire.basicCancel:
            throw AMQPError("the broker cancelled the consumer (was the queue deleted?)")
        default:
            return
        }
    }

    private func check(_ status: Int32, _ context: String) throws(AMQPError) {
        guard status != AMQP_STATUS_OK.rawValue else { return }
        broken = true
        throw AMQPError("\(context): \(String(cString: amqp_error_string2(status)))")
    }

    private func check(_ reply: amqp_rpc_reply_t, _ context: String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            broken = true
            throw AMQPError("\(context): \(String(cString: amqp_error_string2(reply.library_error)))")
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            broken = true
            if reply.reply.id == Wire.connectionClose {
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                throw AMQPError("\(context): the broker closed the connection: \(close.reply_code) \(string(close.reply_text))")
            }
            if reply.reply.id == Wire.channelClose {
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                throw AMQPError("\(context): the broker closed the channel: \(close.reply_code) \(string(close.reply_text))")
            }
            throw AMQPError("\(context): the broker refused (method \(reply.reply.id))")
        default:
            broken = true
            throw AMQPError("\(context): the connection ended")
        }
    }

    private func string(_ bytes: amqp_bytes_t) -> String {
        guard bytes.len > 0, let pointer = bytes.bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: bytes.len), as: UTF8.self)
    }

    private func headers(_ table: amqp_table_t) -> [String: String] {
        var result: [String: String] = [:]
        for index in 0..<Int(table.num_entries) {
            let entry = table.entries[index]
            let value: String? =
                switch entry.value.kind {
                case UInt8(ascii: "S"), UInt8(ascii: "x"): string(entry.value.value.bytes)
                case UInt8(ascii: "I"): String(entry.value.value.i32)
                case UInt8(ascii: "l"): String(entry.value.value.i64)
                case UInt8(ascii: "t"): String(entry.value.value.boolean != 0)
                default: nil
                }
            if let value { result[string(entry.key)] = value }
        }
        return result
    }
}
