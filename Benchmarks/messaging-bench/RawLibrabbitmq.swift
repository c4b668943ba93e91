// The peer the bus is measured against: a plain librabbitmq loop, written the way a careful C
// programmer would (pipelined confirms, one ack per delivery), with the same message properties
// the bus sends. It is the benchmark's only direct user of librabbitmq besides DroverMessaging.
import CRabbitMQ
import Foundation

struct RawFailure: Error, CustomStringConvertible {
    var description: String
}

final class RawConnection {
    let state: amqp_connection_state_t

    init(host: String, port: Int, user: String, password: String, vhost: String) throws {
        state = amqp_new_connection()
        let socket = amqp_tcp_socket_new(state)
        guard amqp_socket_open(socket, host, Int32(port)) == AMQP_STATUS_OK.rawValue else { throw RawFailure(description: "connect") }
        try Self.check(drover_amqp_login_plain(state, vhost, 0, 131_072, 0, user, password), "login")
        amqp_channel_open(state, 1)
        try Self.check(amqp_get_rpc_reply(state), "channel.open")
    }

    deinit {
        amqp_channel_close(state, 1, 200)
        amqp_connection_close(state, 200)
        amqp_destroy_connection(state)
    }

    static func check(_ reply: amqp_rpc_reply_t, _ what: String) throws {
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else { throw RawFailure(description: "\(what) failed") }
    }

    /// Declares a durable queue bound to `exchange` with `key`, and empties it.
    func prepareQueue(_ queue: String, exchange: String, key: String) throws {
        amqp_exchange_declare(state, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table)
        try Self.check(amqp_get_rpc_reply(state), "exchange.declare")
        amqp_queue_declare(state, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table)
        try Self.check(amqp_get_rpc_reply(state), "queue.declare")
        amqp_queue_bind(state, 1, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), amqp_empty_table)
        try Self.check(amqp_get_rpc_reply(state), "queue.bind")
        amqp_queue_purge(state, 1, amqp_cstring_bytes(queue))
        try Self.check(amqp_get_rpc_reply(state), "queue.purge")
    }

    /// Publishes `count` persistent messages with confirms, `window` unconfirmed at most.
    func publish(count: Int, body: [UInt8], exchange: String, key: String, window: Int) throws {
        amqp_confirm_select(state, 1)
        try Self.check(amqp_get_rpc_reply(state), "confirm.select")
        var confirmed = 0
        var sent = 0
        func awaitConfirms(until limit: Int) throws {
            var frame = amqp_frame_t()
            while sent - confirmed > limit {
                guard amqp_simple_wait_frame(state, &frame) == AMQP_STATUS_OK.rawValue else { throw RawFailure(description: "wait frame") }
                guard frame.frame_type == 1, frame.payload.method.id == 0x003C_0050 else { continue }
                let ack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
                confirmed = ack.multiple != 0 ? Int(ack.delivery_tag) : confirmed + 1
            }
        }
        try exchange.withCString { exchange in
            try key.withCString { key in
                try "application/json".withCString { contentType in
                    try "bench.message".withCString { type in
                        try "x-schema-version".withCString { headerKey in
                            try "1".withCString { headerValue in
                                var entry = amqp_table_entry_t()
                                entry.key = amqp_cstring_bytes(headerKey)
                                entry.value.kind = UInt8(ascii: "S")
                                entry.value.value.bytes = amqp_cstring_bytes(headerValue)
                                try withUnsafeMutablePointer(to: &entry) { entry in
                                    var properties = amqp_basic_properties_t()
                                    properties._flags = (1 << 15) | (1 << 13) | (1 << 12) | (1 << 7) | (1 << 6) | (1 << 5)
                                    properties.content_type = amqp_cstring_bytes(contentType)
                                    properties.delivery_mode = 2
                                    properties.type = amqp_cstring_bytes(type)
                                    properties.headers = amqp_table_t(num_entries: 1, entries: entry)
                                    try body.withUnsafeBytes { bytes in
                                        let payload = amqp_bytes_t(len: bytes.count, bytes: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                                        for index in 0..<count {
                                            let id = "raw-\(index)"
                                            try id.withCString { id in
                                                properties.message_id = amqp_cstring_bytes(id)
                                                properties.timestamp = UInt64(Date().timeIntervalSince1970)
                                                let status = amqp_basic_publish(
                                                    state, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), 0, 0, &properties, payload)
                                                guard status == AMQP_STATUS_OK.rawValue else { throw RawFailure(description: "publish") }
                                            }
                                            sent += 1
                                            if sent - confirmed >= window { try awaitConfirms(until: window / 2) }
                                        }
                                        try awaitConfirms(until: 0)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Consumes `count` messages from `queue`, acknowledging each.
    func consume(count: Int, queue: String, prefetch: UInt16) throws {
        amqp_basic_qos(state, 1, 0, prefetch, 0)
        try Self.check(amqp_get_rpc_reply(state), "basic.qos")
        amqp_basic_consume(state, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
        try Self.check(amqp_get_rpc_reply(state), "basic.consume")
        for _ in 0..<count {
            amqp_maybe_release_buffers(state)
            var envelope = amqp_envelope_t()
            try Self.check(amqp_consume_message(state, &envelope, nil, 0), "consume")
            guard amqp_basic_ack(state, 1, envelope.delivery_tag, 0) == AMQP_STATUS_OK.rawValue else { throw RawFailure(description: "ack") }
            amqp_destroy_envelope(&envelope)
        }
    }
}
