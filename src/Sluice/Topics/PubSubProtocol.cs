using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice.Topics;

/// <summary>The gateway's JSON pub/sub protocol on one endpoint, with that endpoint's <see cref="PubSubProtocolOptions"/>.</summary>
internal sealed class PubSubProtocol
{
    private static readonly JsonWriterOptions s_writerOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    // JSON numbers beyond 2^53 lose precision in JavaScript clients: no offset can be that large anyway.
    private const long MaxOffset = (1L << 53) - 1;
    private const int MaxEpochLength = 64;

    private readonly PubSubProtocolOptions _options;
    private readonly TopicHistoryLimits? _history;
    private readonly bool _presence;

    // The topics each connection joined with presence, to leave them when it closes.
    private readonly ConditionalWeakTable<WebSocketConnection, HashSet<string>> _joined = [];

    public PubSubProtocol(PubSubProtocolOptions options)
    {
        if (options.MaxSubscriptions is { } max)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max);
        }

        if (options.Namespace is { } name)
        {
            _ = TopicName.InNamespace(name, "t");
        }

        _options = options;
        _history = options.History?.ToLimits();
        _presence = options.Presence || options.JoinLeave;
    }

    private string Ops => _presence ? "subscribe, unsubscribe, publish or presence" : "subscribe, unsubscribe or publish";

    public async ValueTask<object?> HandleAsync(MessageContext context)
    {
        if (context.Message.IsBinary || context.Json is not JsonObject root)
        {
            return Error("a message is a JSON object with \"op\" and \"topic\"");
        }

        if (!TryGetString(root, "op", out var op))
        {
            return Error($"\"op\" must be {Ops}");
        }

        if (!TryGetString(root, "topic", out var topic))
        {
            return Error("\"topic\" must be a non-empty string of valid Unicode");
        }

        var connection = context.Connection;
        var bus = connection.Route.Topics;
        var options = bus.Options;
        if (TopicName.GetError(topic, options.MaxTopicLength) is { } invalid)
        {
            return Error($"\"topic\": {invalid}");
        }

        var key = TopicName.InNamespace(_options.Namespace, topic);
        switch (op)
        {
            case "subscribe":
                if (!await AllowedAsync(connection, topic, PubSubOperation.Subscribe))
                {
                    return Error($"not allowed to subscribe to '{topic}'", status: 403);
                }

                return await SubscribeAsync(connection, bus, topic, key, root);
            case "unsubscribe":
                if (connection.Unsubscribe(key) && _presence)
                {
                    await LeaveAsync(connection, bus, topic, key);
                }

                return Answer("unsubscribed", topic);
            case "publish":
                if (!root.TryGetPropertyValue("data", out var data))
                {
                    return Error("\"publish\" needs \"data\"");
                }

                if (!await AllowedAsync(connection, topic, PubSubOperation.Publish))
                {
                    return Error($"not allowed to publish to '{topic}'", status: 403);
                }

                if (_history is { } limits)
                {
                    try
                    {
                        await bus.PublishWithHistoryAsync(key, HistoryMessage(topic, data, connection.Id), limits, connection.Closed);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        // Not delivered anywhere (delivery follows the append): say so rather than lose it silently.
                        return Error($"the message was not published: the history is unavailable ({ex.GetType().Name})", status: 503);
                    }

                    return null;
                }

                await connection.PublishAsync(key, Envelope(topic, data), includeSelf: false);
                return null;
            case "presence":
                if (!_presence)
                {
                    return Error("presence is not enabled on this route");
                }

                if (!await AllowedAsync(connection, topic, PubSubOperation.Subscribe))
                {
                    return Error($"not allowed to see who is subscribed to '{topic}'", status: 403);
                }

                return await PresenceAsync(bus, topic, key, connection.Closed);
            default:
                return Error($"unknown op '{op}': expected {Ops}");
        }
    }

    /// <summary>Publishes <paramref name="data"/> as this protocol's <c>message</c>, with history when the endpoint keeps it.</summary>
    public ValueTask PublishAsync(TopicBus bus, string topic, JsonNode? data, CancellationToken cancellationToken)
    {
        bus.Validate(topic);
        var key = TopicName.InNamespace(_options.Namespace, topic);
        return _history is { } limits
            ? bus.PublishWithHistoryAsync(key, HistoryMessage(topic, data, null), limits, cancellationToken)
            : bus.PublishAsync(key, Envelope(topic, data), cancellationToken);
    }

    private async ValueTask<bool> AllowedAsync(WebSocketConnection connection, string topic, PubSubOperation operation) =>
        _options.Authorize is not { } authorize || await authorize(new PubSubAuthorizationContext(connection, topic, operation));

    private async ValueTask<object?> SubscribeAsync(WebSocketConnection connection, TopicBus bus, string topic, string key, JsonObject root)
    {
        long? since = null;
        string? epoch = null;
        if (root.TryGetPropertyValue("since", out var sinceNode) && sinceNode is not null)
        {
            if (_history is null)
            {
                return Error("\"since\": this route keeps no history");
            }

            if (ParseSince(sinceNode, out var offset, out epoch) is { } error)
            {
                return Error($"\"since\": {error}");
            }

            since = offset;
        }

        var limit = _options.MaxSubscriptions ?? bus.Options.MaxSubscriptionsPerConnection;
        var recovery = _history is null ? null : new TopicRecovery(connection, bus.Options.SubscriberQueueCapacity);
        var result = connection.TrySubscribe(key, limit, recovery);
        if (result == SubscribeResult.OverLimit)
        {
            return Error($"at most {limit} subscriptions per connection: unsubscribe from a topic first", status: 429);
        }

        if (result == SubscribeResult.Subscribed && _presence)
        {
            await JoinAsync(connection, bus, topic, key);
        }

        if (recovery is null || result != SubscribeResult.Subscribed)
        {
            return Answer("subscribed", topic);
        }

        TopicHistoryRead read;
        try
        {
            read = await bus.ReadHistoryAsync(key, since ?? long.MaxValue, _history!.Value, connection.Closed).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !connection.Closed.IsCancellationRequested)
        {
            if (connection.Unsubscribe(key) && _presence)
            {
                await LeaveAsync(connection, bus, topic, key);
            }

            return Error($"the history is unavailable ({ex.GetType().Name}); try again", status: 503);
        }

        // Replayed only within the epoch the client knows and when it is not ahead of the topic; otherwise the
        // client learns it has lost messages (recovered: false) and goes live from here.
        var replay = since is { } after && epoch == read.Epoch && after <= read.LastOffset ? read.Entries : [];
        var recovered = since is { } from && epoch == read.Epoch && from <= read.LastOffset && replay.Count == read.LastOffset - from;
        var answer = Write(writer =>
        {
            writer.WriteString("op", "subscribed");
            writer.WriteString("topic", topic);
            writer.WriteNumber("offset", read.LastOffset);
            writer.WriteString("epoch", read.Epoch);
            if (since is not null)
            {
                writer.WriteBoolean("recovered", recovered);
            }
        });
        var start = since is { } s && replay.Count > 0 ? s : read.LastOffset;
        recovery.Complete(TopicFrame.Create(answer), replay.Select(e => TopicFrame.Create(e.Message, e.Offset)), start);
        return null;
    }

    private static string? ParseSince(JsonNode node, out long offset, out string? epoch)
    {
        offset = 0;
        epoch = null;
        if (node is not JsonObject since)
        {
            return "must be an object {\"offset\":N,\"epoch\":\"E\"}";
        }

        if (!since.TryGetPropertyValue("offset", out var offsetNode) || offsetNode is not JsonValue offsetValue
            || offsetValue.GetValueKind() != JsonValueKind.Number || !offsetValue.TryGetValue(out offset) || offset < 0 || offset > MaxOffset)
        {
            return $"\"offset\" must be a whole number from 0 to {MaxOffset}";
        }

        if (!TryGetString(since, "epoch", out var text) || text.Length > MaxEpochLength)
        {
            return $"\"epoch\" must be a string of at most {MaxEpochLength} characters";
        }

        epoch = text;
        return null;
    }

    private static async ValueTask<object?> PresenceAsync(TopicBus bus, string topic, string key, CancellationToken cancellationToken)
    {
        IReadOnlyList<string?> present;
        try
        {
            present = await bus.GetPresenceAsync(key, cancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return Error($"presence is unavailable ({ex.GetType().Name}); try again", status: 503);
        }

        return Write(writer =>
        {
            writer.WriteString("op", "presence");
            writer.WriteString("topic", topic);
            writer.WriteNumber("count", present.Count);
            writer.WriteStartArray("subjects");
            foreach (var subject in present.OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                writer.WriteStringValue(subject);
            }

            writer.WriteEndArray();
        });
    }

    private async ValueTask JoinAsync(WebSocketConnection connection, TopicBus bus, string topic, string key)
    {
        var joined = _joined.GetValue(connection, c =>
        {
            c.Closed.Register(() => _ = LeaveAllAsync(c, bus));
            return new HashSet<string>(StringComparer.Ordinal);
        });
        lock (joined)
        {
            joined.Add(topic);
        }

        await Quietly(bus.JoinAsync(key, connection));
        if (_options.JoinLeave)
        {
            await bus.PublishAsync(key, Event("join", topic, connection.Subject), connection, CancellationToken.None);
        }
    }

    private async ValueTask LeaveAsync(WebSocketConnection connection, TopicBus bus, string topic, string key)
    {
        if (_joined.TryGetValue(connection, out var joined))
        {
            lock (joined)
            {
                joined.Remove(topic);
            }
        }

        await Quietly(bus.LeaveAsync(key, connection));
        if (_options.JoinLeave)
        {
            await bus.PublishAsync(key, Event("leave", topic, connection.Subject), connection, CancellationToken.None);
        }
    }

    private async Task LeaveAllAsync(WebSocketConnection connection, TopicBus bus)
    {
        if (!_joined.TryGetValue(connection, out var joined))
        {
            return;
        }

        string[] topics;
        lock (joined)
        {
            topics = [.. joined];
        }

        foreach (var topic in topics)
        {
            try
            {
                await LeaveAsync(connection, bus, topic, TopicName.InNamespace(_options.Namespace, topic));
            }
            catch (Exception)
            {
                // The connection is gone and nobody awaits this: a backplane that cannot be told now learns it from
                // the node's heartbeat instead.
            }
        }
    }

    private static async ValueTask Quietly(ValueTask operation)
    {
        try
        {
            await operation;
        }
        catch (Exception)
        {
            // Presence is advisory: a backplane that is away must not fail the subscribe itself.
        }
    }

    private static TopicHistoryMessage HistoryMessage(string topic, JsonNode? data, string? exclude)
    {
        // The envelope with offset and epoch left out, written in two parts around them.
        var prefix = Write(writer =>
        {
            writer.WriteString("op", "message");
            writer.WriteString("topic", topic);
        });
        var suffix = Write(writer => WriteData(writer, data));
        // {"op":"message","topic":"T"}  ->  {"op":"message","topic":"T","offset":
        // {"data":...}                  ->  ,"data":...}
        return new TopicHistoryMessage(Concat(prefix.Payload.Span[..^1], ",\"offset\":"u8), Concat(","u8, suffix.Payload.Span[1..]), exclude);
    }

    private static byte[] Concat(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second)
    {
        var bytes = new byte[first.Length + second.Length];
        first.CopyTo(bytes);
        second.CopyTo(bytes.AsSpan(first.Length));
        return bytes;
    }

    public static WebSocketMessage Envelope(string topic, JsonNode? data) => Write(writer =>
    {
        writer.WriteString("op", "message");
        writer.WriteString("topic", topic);
        WriteData(writer, data);
    });

    private static void WriteData(Utf8JsonWriter writer, JsonNode? data)
    {
        writer.WritePropertyName("data");
        if (data is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            data.WriteTo(writer);
        }
    }

    private static WebSocketMessage Event(string op, string topic, string? subject) => Write(writer =>
    {
        writer.WriteString("op", op);
        writer.WriteString("topic", topic);
        writer.WriteString("subject", subject);
    });

    private static WebSocketMessage Answer(string op, string topic) => Write(writer =>
    {
        writer.WriteString("op", op);
        writer.WriteString("topic", topic);
    });

    private static WebSocketMessage Error(string message, int status = 400) => Write(writer =>
    {
        writer.WriteStartObject("error");
        writer.WriteString("policy", "pubsub");
        writer.WriteNumber("status", status);
        writer.WriteString("message", message);
        writer.WriteEndObject();
    });

    private static WebSocketMessage Write(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer, s_writerOptions))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }

        return WebSocketMessage.FromText(buffer.WrittenMemory);
    }

    private static bool TryGetString(JsonObject root, string name, out string value)
    {
        value = string.Empty;
        if (!root.TryGetPropertyValue(name, out var node) || node is not JsonValue jsonValue)
        {
            return false;
        }

        try
        {
            if (jsonValue.TryGetValue(out string? text))
            {
                value = text;
                return true;
            }
        }
        catch (InvalidOperationException)
        {
            // An escaped unpaired surrogate ("\ud800") parses as JSON but is no .NET string: the reader refuses it
            // when asked for the text. It is no valid name either.
        }

        return false;
    }
}
