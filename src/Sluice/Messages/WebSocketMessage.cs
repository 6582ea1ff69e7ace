using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Sluice;

/// <summary>
/// One complete WebSocket data message: its type and its payload bytes; or, for the interceptors that ask for
/// them (<see cref="InterceptorRegistration.WithControlFrames"/>), a control frame: close, ping or pong.
/// </summary>
/// <remarks>
/// <para>
/// Ownership: a message that Sluice received from a socket is <em>borrowed</em>
/// (<see cref="IsBorrowed"/>): its payload lives in the connection's pooled receive buffer and is valid
/// only until the pipeline for that message has finished, including the code an interceptor runs after
/// <c>next</c>; the message object itself may then be reused for the next message the connection receives in the
/// same direction, as ASP.NET Core reuses an <c>HttpContext</c>, so its type, length and <see cref="ToString"/> are
/// also only valid until then. Await a send of such a message inside the pipeline, and call <see cref="Detach"/> to
/// keep one beyond that point. Messages created
/// with the <c>From*</c> factories own their payload and can be kept, shared and sent many times.
/// </para>
/// <para>
/// <see cref="Text"/> decodes the payload once, on first use. <see cref="ToString"/> never includes
/// the payload, so a message can be logged without leaking its content.
/// </para>
/// </remarks>
public sealed class WebSocketMessage
{
    private string? _text;

    private WebSocketMessage(MessageType type, ReadOnlyMemory<byte> payload, string? text, bool borrowed)
    {
        Type = type;
        Payload = payload;
        _text = text;
        IsBorrowed = borrowed;
    }

    /// <summary>Gets whether this is a text or a binary message, or which control frame it is.</summary>
    public MessageType Type { get; private set; }

    /// <summary>Gets the payload bytes; UTF-8 for a text message.</summary>
    public ReadOnlyMemory<byte> Payload { get; private set; }

    /// <summary>Gets the payload length in bytes.</summary>
    public int Length => Payload.Length;

    /// <summary>Gets whether this is a text message.</summary>
    public bool IsText => Type == MessageType.Text;

    /// <summary>Gets whether this is a binary message.</summary>
    public bool IsBinary => Type == MessageType.Binary;

    /// <summary>Gets whether this is a control frame (close, ping or pong) rather than a data message.</summary>
    public bool IsControl => Type >= MessageType.Close;

    /// <summary>
    /// Gets the code of a close frame; null for a close frame without one (received as 1005) and for every
    /// other message.
    /// </summary>
    public WebSocketCloseStatus? CloseStatus =>
        Type == MessageType.Close && Payload.Length >= 2 ? (WebSocketCloseStatus)BinaryPrimitives.ReadUInt16BigEndian(Payload.Span) : null;

    /// <summary>Gets the reason of a close frame; null when it has none and for every other message.</summary>
    public string? CloseDescription =>
        Type == MessageType.Close && Payload.Length > 2 ? _text ??= Encoding.UTF8.GetString(Payload.Span[2..]) : null;

    /// <summary>
    /// Gets whether the payload is borrowed from a receive buffer and therefore valid only while the
    /// pipeline for this message runs. See <see cref="Detach"/>.
    /// </summary>
    public bool IsBorrowed { get; }

    /// <summary>Gets the payload of a text message as a string, decoded once on first access.</summary>
    /// <exception cref="InvalidOperationException">The message is binary.</exception>
    public string Text
    {
        get
        {
            if (Type != MessageType.Text)
            {
                throw new InvalidOperationException("A binary message has no text; read Payload instead.");
            }

            return _text ??= Encoding.UTF8.GetString(Payload.Span);
        }
    }

    /// <summary>Creates a text message from a string.</summary>
    public static WebSocketMessage FromText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new WebSocketMessage(MessageType.Text, Encoding.UTF8.GetBytes(text), text, borrowed: false);
    }

    /// <summary>Creates a text message from UTF-8 bytes that the caller will not change afterwards.</summary>
    public static WebSocketMessage FromText(ReadOnlyMemory<byte> utf8) =>
        new(MessageType.Text, utf8, text: null, borrowed: false);

    /// <summary>Creates a binary message from bytes that the caller will not change afterwards.</summary>
    public static WebSocketMessage FromBinary(ReadOnlyMemory<byte> bytes) =>
        new(MessageType.Binary, bytes, text: null, borrowed: false);

    /// <summary>Creates a message of the given type from bytes that the caller will not change afterwards.</summary>
    public static WebSocketMessage Create(MessageType type, ReadOnlyMemory<byte> payload)
    {
        if (type is not (MessageType.Text or MessageType.Binary))
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "A data message is text or binary.");
        }

        return new WebSocketMessage(type, payload, text: null, borrowed: false);
    }

    /// <summary>
    /// Creates a close frame with <paramref name="status"/> and <paramref name="reason"/>; a null status is a close
    /// frame without a code. An interceptor that replaces a close with it changes what is sent on. The code and
    /// the reason are checked when the frame is sent: a code that may not be sent (1005, 1006, 1015, outside
    /// 1000-4999) or a reason over 123 bytes of UTF-8 is refused there, and the original close goes on instead.
    /// </summary>
    /// <exception cref="ArgumentException">A reason without a code, or a code outside 0-65535.</exception>
    public static WebSocketMessage FromClose(WebSocketCloseStatus? status, string? reason = null)
    {
        if (status is null)
        {
            if (!string.IsNullOrEmpty(reason))
            {
                throw new ArgumentException("A close frame without a code has no reason.", nameof(reason));
            }

            return new WebSocketMessage(MessageType.Close, ReadOnlyMemory<byte>.Empty, text: null, borrowed: false);
        }

        if ((uint)status.Value > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(status), status, "A close code is a 16-bit number.");
        }

        var reasonBytes = string.IsNullOrEmpty(reason) ? 0 : Encoding.UTF8.GetByteCount(reason);
        var payload = new byte[2 + reasonBytes];
        BinaryPrimitives.WriteUInt16BigEndian(payload, (ushort)status.Value);
        if (reasonBytes > 0)
        {
            Encoding.UTF8.GetBytes(reason, payload.AsSpan(2));
        }

        return new WebSocketMessage(MessageType.Close, payload, string.IsNullOrEmpty(reason) ? null : reason, borrowed: false);
    }

    /// <summary>Creates a ping carrying <paramref name="payload"/> (at most 125 bytes), which the caller will not change afterwards.</summary>
    public static WebSocketMessage FromPing(ReadOnlyMemory<byte> payload = default) => Control(MessageType.Ping, payload);

    /// <summary>
    /// Creates a pong carrying <paramref name="payload"/> (at most 125 bytes): reply with it to answer a ping, with
    /// the ping's payload as RFC 6455 requires.
    /// </summary>
    public static WebSocketMessage FromPong(ReadOnlyMemory<byte> payload = default) => Control(MessageType.Pong, payload);

    /// <summary>Creates a text message holding <paramref name="value"/> serialized as JSON.</summary>
    [System.Diagnostics.CodeAnalysis.RequiresUnreferencedCode("JSON serialization of arbitrary types may need types that trimming removes; use the JsonTypeInfo overload.")]
    [System.Diagnostics.CodeAnalysis.RequiresDynamicCode("JSON serialization of arbitrary types may need runtime code generation; use the JsonTypeInfo overload.")]
    public static WebSocketMessage FromJson<T>(T value, JsonSerializerOptions? options = null) =>
        new(MessageType.Text, JsonSerializer.SerializeToUtf8Bytes(value, options), text: null, borrowed: false);

    /// <summary>Creates a text message holding <paramref name="value"/> serialized as JSON with source-generated metadata.</summary>
    public static WebSocketMessage FromJson<T>(T value, JsonTypeInfo<T> jsonTypeInfo) =>
        new(MessageType.Text, JsonSerializer.SerializeToUtf8Bytes(value, jsonTypeInfo), text: null, borrowed: false);

    /// <summary>Deserializes the payload of a text message as JSON, straight from its UTF-8 bytes.</summary>
    /// <exception cref="JsonException">The payload is not valid JSON for <typeparamref name="T"/>.</exception>
    [System.Diagnostics.CodeAnalysis.RequiresUnreferencedCode("JSON deserialization of arbitrary types may need types that trimming removes; use the JsonTypeInfo overload.")]
    [System.Diagnostics.CodeAnalysis.RequiresDynamicCode("JSON deserialization of arbitrary types may need runtime code generation; use the JsonTypeInfo overload.")]
    public T? Deserialize<T>(JsonSerializerOptions? options = null) => JsonSerializer.Deserialize<T>(Payload.Span, options);

    /// <summary>Deserializes the payload as JSON with source-generated metadata.</summary>
    public T? Deserialize<T>(JsonTypeInfo<T> jsonTypeInfo) => JsonSerializer.Deserialize(Payload.Span, jsonTypeInfo);

    /// <summary>
    /// Returns a message that owns its payload: this instance if it already does, otherwise a copy.
    /// Call it to keep a received message after its pipeline has finished.
    /// </summary>
    public WebSocketMessage Detach() =>
        IsBorrowed
            ? new WebSocketMessage(Type, Payload.ToArray(), _text, borrowed: false) { IsFragment = IsFragment, FragmentOffset = FragmentOffset, IsFinal = IsFinal }
            : this;

    /// <summary>Describes the message without its payload, so that it is safe to log.</summary>
    public override string ToString() => Type switch
    {
        MessageType.Text => $"text message, {Length} bytes",
        MessageType.Binary => $"binary message, {Length} bytes",
        MessageType.Close => $"close frame, code {(CloseStatus is { } status ? ((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture) : "none")}",
        _ => $"{(Type == MessageType.Ping ? "ping" : "pong")} frame, {Length} bytes",
    };

    private static WebSocketMessage Control(MessageType type, ReadOnlyMemory<byte> payload)
    {
        if (payload.Length > 125)
        {
            throw new ArgumentException("A control frame carries at most 125 bytes.", nameof(payload));
        }

        return new WebSocketMessage(type, payload, text: null, borrowed: false);
    }

    // The receive loop hands out views of its pooled buffer; see the ownership remarks above.
    internal static WebSocketMessage Borrow(MessageType type, ReadOnlyMemory<byte> payload) =>
        new(type, payload, text: null, borrowed: true);

    /// <summary>Points a borrowed whole message at the next one a receive loop hands out (default: at nothing).</summary>
    internal void Rebind(MessageType type, ReadOnlyMemory<byte> payload)
    {
        System.Diagnostics.Debug.Assert(IsBorrowed && !IsFragment, "Only a receive loop's own whole messages are reused.");
        Type = type;
        Payload = payload;
        _text = null;
    }

    /// <summary>
    /// Gets whether this is the last (or only) part of its message: true for every whole message, false for all but
    /// the last fragment of a message streamed fragment by fragment (<see cref="WebSocketStreamingOptions"/>).
    /// </summary>
    public bool IsFinal { get; private init; } = true;

    /// <summary>
    /// Gets whether this is one fragment of a message relayed as it arrives rather than held whole
    /// (<see cref="WebSocketStreamingOptions"/>). Only interceptors registered with
    /// <see cref="InterceptorRegistration.HandlesFragments"/> see fragments.
    /// </summary>
    public bool IsFragment { get; private init; }

    /// <summary>
    /// Gets, for a fragment, how many bytes of its message came before it: 0 for the first fragment, and
    /// <c>FragmentOffset + Length</c> is the message's size so far. Always 0 for a whole message.
    /// </summary>
    public long FragmentOffset { get; private init; }

    // A fragment of a streamed message, borrowed from the receive buffer like a whole message.
    internal static WebSocketMessage BorrowFragment(MessageType type, ReadOnlyMemory<byte> payload, long offset, bool isFinal) =>
        new(type, payload, text: null, borrowed: true) { IsFragment = true, FragmentOffset = offset, IsFinal = isFinal };
}
