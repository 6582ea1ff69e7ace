using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice.Topics;

internal static class PubSubProtocol
{
    private static readonly JsonWriterOptions s_writerOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <param name="context">The message.</param>
    /// <param name="maxSubscriptions">The route's limit of subscriptions per connection, or null for <see cref="TopicOptions.MaxSubscriptionsPerConnection"/>.</param>
    public static async ValueTask<object?> HandleAsync(MessageContext context, int? maxSubscriptions)
    {
        if (context.Message.IsBinary || context.Json is not JsonObject root)
        {
            return Error("a message is a JSON object with \"op\" and \"topic\"");
        }

        if (!TryGetString(root, "op", out var op))
        {
            return Error("\"op\" must be subscribe, unsubscribe or publish");
        }

        if (!TryGetString(root, "topic", out var topic))
        {
            return Error("\"topic\" must be a non-empty string of valid Unicode");
        }

        var connection = context.Connection;
        var options = connection.Route.Topics.Options;
        if (TopicName.GetError(topic, options.MaxTopicLength) is { } invalid)
        {
            return Error($"\"topic\": {invalid}");
        }

        switch (op)
        {
            case "subscribe":
                var limit = maxSubscriptions ?? options.MaxSubscriptionsPerConnection;
                if (connection.TrySubscribe(topic, limit) == SubscribeResult.OverLimit)
                {
                    return Error($"at most {limit} subscriptions per connection: unsubscribe from a topic first", status: 429);
                }

                return Answer("subscribed", topic);
            case "unsubscribe":
                connection.Unsubscribe(topic);
                return Answer("unsubscribed", topic);
            case "publish":
                if (!root.TryGetPropertyValue("data", out var data))
                {
                    return Error("\"publish\" needs \"data\"");
                }

                await connection.PublishAsync(topic, Envelope(topic, data), includeSelf: false);
                return null;
            default:
                return Error($"unknown op '{op}': expected subscribe, unsubscribe or publish");
        }
    }

    public static WebSocketMessage Envelope(string topic, JsonNode? data) => Write(writer =>
    {
        writer.WriteString("op", "message");
        writer.WriteString("topic", topic);
        writer.WritePropertyName("data");
        if (data is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            data.WriteTo(writer);
        }
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
