using System.Buffers;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice;

/// <summary>
/// Everything about one message while it travels through a pipeline: the message, its direction, its
/// connection, a unique chain id, an <see cref="Items"/> bag shared by the interceptors, and the ways to end it.
/// </summary>
/// <remarks>
/// <para>A context is valid while the pipeline for its message runs. Sluice reuses it for the connection's
/// next message in the same direction, so do not keep it; copy what you need. Reach the current context from
/// code deeper in a call with <see cref="IMessageContextAccessor"/>.</para>
/// <para>JSON: a text message is parsed once per chain, however many interceptors look at it.
/// <see cref="TryGetJsonElement"/> reads it (a pooled <see cref="JsonDocument"/>); <see cref="Json"/> gives a
/// mutable tree over the same parse, and an interceptor that changes the tree calls
/// <see cref="MarkJsonModified"/>. The message is serialized again once, when it is next read or forwarded.</para>
/// </remarks>
public sealed class MessageContext
{
    // Deeper than System.Text.Json's default of 64: a document the backend's parser reads (Python's allows about 1,000
    // levels) must not be "not JSON" here, or the JSON policies would pass it unread.
    private static readonly JsonDocumentOptions s_documentOptions = new() { MaxDepth = 1000 };
    private static readonly JsonWriterOptions s_writerOptions = new()
    {
        // WebSocket payloads are not embedded in HTML; keep non-ASCII text as UTF-8 rather than \u escapes.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static long s_lastChainId;

    private readonly MessageSink _sink;
    private WebSocketMessage _message = null!;

    // The one message object a receive loop's context rebinds to each message it receives (ResetReceived), so that a
    // received message costs no allocation; like the payload, it is valid while the message's pipeline runs.
    private WebSocketMessage? _received;
    private Dictionary<object, object?>? _items;
    private JsonDocument? _document;
    private List<JsonDocument>? _retiredDocuments;
    private JsonNode? _json;
    private JsonState _jsonState;

    internal MessageContext(WebSocketConnection connection, MessageDirection direction, MessageSink sink)
    {
        Connection = connection;
        Direction = direction;
        _sink = sink;
    }

    private enum JsonState : byte
    {
        /// <summary>Nothing parsed yet.</summary>
        NotParsed,

        /// <summary>The document (and the tree, if created) match the message.</summary>
        Parsed,

        /// <summary>The tree was changed: it is the truth, the message and the document are stale.</summary>
        Modified,

        /// <summary>The message is binary or not valid JSON.</summary>
        NotJson,
    }

    /// <summary>Gets the connection the message belongs to.</summary>
    public WebSocketConnection Connection { get; }

    /// <summary>Gets which way the message travels.</summary>
    public MessageDirection Direction { get; }

    /// <summary>
    /// Gets or sets the message. Setting it replaces the message for every later interceptor and for the
    /// destination, and discards a parsed <see cref="Json"/> tree.
    /// </summary>
    public WebSocketMessage Message
    {
        get
        {
            if (_jsonState == JsonState.Modified)
            {
                // Write the changed tree back once. The tree stays (it matches the new message); the old document
                // is retired, and a reader that wants an element gets the new message parsed.
                _message = SerializeJson(_json);
                RetireDocument();
                _jsonState = JsonState.Parsed;
            }

            return _message;
        }

        set
        {
            ArgumentNullException.ThrowIfNull(value);
            _message = value;
            RetireJson();
        }
    }

    /// <summary>Gets an id unique to this message's trip through the pipeline within the process.</summary>
    public long ChainId { get; private set; }

    /// <summary>Gets the <see cref="Stopwatch"/> timestamp at which the message arrived or was sent by the app.</summary>
    public long Timestamp { get; private set; }

    /// <summary>Gets the time since <see cref="Timestamp"/>: how long the message has been in Sluice.</summary>
    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(Timestamp);

    /// <summary>
    /// Gets, for a reply that a host-mode message handler returned, the context of the inbound message it
    /// answers, so that an outbound interceptor can correlate the
    /// two or measure the handler's time. Null for every other message.
    /// </summary>
    public MessageContext? Cause { get; private set; }

    /// <summary>Gets a bag for interceptors to share values about this message; empty for each message.</summary>
    public IDictionary<object, object?> Items => _items ??= [];

    /// <summary>Gets a token that fires when the connection has closed.</summary>
    public CancellationToken ConnectionClosed => Connection.Closed;

    /// <summary>
    /// Gets or sets the message as a mutable JSON tree over the shared parse, created on first access. Null when
    /// the message is binary or not valid JSON (see <see cref="IsJson"/>). Change it in place and call
    /// <see cref="MarkJsonModified"/>, or set a new tree; either replaces the message's content.
    /// </summary>
    /// <remarks>Only interceptors that change JSON need the tree; reading is cheaper with <see cref="TryGetJsonElement"/>.</remarks>
    public JsonNode? Json
    {
        get
        {
            if (_json is null && _jsonState != JsonState.Modified && EnsureParsed())
            {
                var root = _document!.RootElement;
                _json = root.ValueKind switch
                {
                    JsonValueKind.Object => JsonObject.Create(root),
                    JsonValueKind.Array => JsonArray.Create(root),
                    JsonValueKind.Null => null,
                    _ => JsonValue.Create(root),
                };
            }

            return _json;
        }

        set
        {
            _json = value;
            _jsonState = JsonState.Modified;
        }
    }

    /// <summary>Gets whether the message is a text message holding valid JSON (possibly the literal null).</summary>
    public bool IsJson => _jsonState == JsonState.Modified || EnsureParsed();

    /// <summary>
    /// Reads the message's current JSON without copying it: parsed once per chain and shared by every
    /// interceptor. Returns false for a binary message or text that is not valid JSON. The element is valid while
    /// the message's pipeline runs.
    /// </summary>
    public bool TryGetJsonElement(out JsonElement element)
    {
        if (_jsonState == JsonState.Modified)
        {
            // A tree changed before this read: serialize it once (the Message getter) and read the result.
            _ = Message;
        }

        if (!EnsureParsed())
        {
            element = default;
            return false;
        }

        element = _document!.RootElement;
        return true;
    }

    /// <summary>Gets how the pipeline ended for this message so far.</summary>
    public MessageOutcome Outcome { get; private set; }

    /// <summary>Gets why the message was dropped, replied to or closed on, when an interceptor said.</summary>
    public string? OutcomeReason { get; private set; }

    internal MessageSink Sink => _sink;

    /// <summary>The type of the message as it entered the chain, for metrics.</summary>
    internal MessageType ReceivedType { get; set; }

    /// <summary>The index of the innermost interceptor the message reached; tells which one stopped it.</summary>
    internal int Layer { get; set; } = -1;

    /// <summary>Set while a <see cref="ReloadableInterceptors"/> set runs: the names its layers index into.</summary>
    internal string[]? LayerNames { get; set; }

    /// <summary>Set while a fragment of a streamed message runs: how its sink relays it.</summary>
    internal FragmentRelay? Fragment { get; set; }

    /// <summary>Records that an interceptor changed the tree returned by <see cref="Json"/> in place.</summary>
    /// <exception cref="InvalidOperationException">The message is not JSON.</exception>
    public void MarkJsonModified()
    {
        if (_json is null && _jsonState != JsonState.Modified)
        {
            throw new InvalidOperationException("Read the tree from MessageContext.Json before marking it modified.");
        }

        _jsonState = JsonState.Modified;
    }

    /// <summary>
    /// Sends <paramref name="message"/> to the side this message came from (the client for an inbound
    /// message, the backend for an outbound one in proxy mode), without passing through any pipeline.
    /// It does not stop this message: return without calling <c>next</c> for that.
    /// </summary>
    public void Reply(WebSocketMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (Outcome == MessageOutcome.None)
        {
            Outcome = MessageOutcome.Replied;
        }

        _sink.Reply(this, message);
    }

    /// <summary>
    /// Closes the connection (both legs in proxy mode) with <paramref name="status"/>, completing the close
    /// handshake. Return without calling <c>next</c> afterwards; nothing more is sent on the connection.
    /// </summary>
    public void Close(WebSocketCloseStatus status, string? reason = null)
    {
        Outcome = MessageOutcome.Closed;
        OutcomeReason = reason;
        Connection.BeginClose(status, reason, ConnectionCloseInitiator.Server);
    }

    /// <summary>
    /// Records why this message is being dropped, for metrics and logs. Dropping itself is not calling
    /// <c>next</c>; this call only says why.
    /// </summary>
    public void Drop(string? reason = null)
    {
        if (Outcome is MessageOutcome.None or MessageOutcome.Replied)
        {
            Outcome = Outcome == MessageOutcome.Replied ? MessageOutcome.Replied : MessageOutcome.Dropped;
            OutcomeReason = reason;
        }
    }

    internal void SetReplyReason(string reason) => OutcomeReason = reason;

    internal void MarkForwarded() => Outcome = MessageOutcome.Forwarded;

    internal void MarkFailed() => Outcome = MessageOutcome.Failed;

    /// <summary>The end of every chain: hands the message to the destination of its direction.</summary>
    internal static readonly MessageDelegate Terminal = static context =>
    {
        context.MarkForwarded();
        return context._sink.ForwardAsync(context);
    };

    internal void Reset(WebSocketMessage message, long timestamp, MessageContext? cause = null)
    {
        _message = message;
        ReleaseJson();
        _items?.Clear();
        ChainId = Interlocked.Increment(ref s_lastChainId);
        Timestamp = timestamp;
        Cause = cause;
        Outcome = MessageOutcome.None;
        OutcomeReason = null;
        Layer = -1;
        LayerNames = null;
    }

    /// <summary><see cref="Reset"/> for a message just received, borrowed from the receive buffer.</summary>
    internal void ResetReceived(MessageType type, ReadOnlyMemory<byte> payload, long timestamp)
    {
        if (_received is null)
        {
            _received = WebSocketMessage.Borrow(type, payload);
        }
        else
        {
            _received.Rebind(type, payload);
        }

        Reset(_received, timestamp);
    }

    /// <summary>Drops references to the message so a pooled context holds no payload between messages.</summary>
    internal void Clear()
    {
        _message = null!;
        _received?.Rebind(MessageType.Text, default);
        ReleaseJson();
        Cause = null;
    }

    private bool EnsureParsed()
    {
        switch (_jsonState)
        {
            case JsonState.NotJson:
                return false;
            case JsonState.Modified:
            case JsonState.Parsed when _document is not null:
                return true;
        }

        _jsonState = JsonState.NotJson;
        if (_message.IsText)
        {
            try
            {
                _document = JsonDocument.Parse(_message.Payload, s_documentOptions);
                _jsonState = JsonState.Parsed;
            }
            catch (JsonException)
            {
            }
        }

        return _jsonState == JsonState.Parsed;
    }

    /// <summary>The message was replaced: forget its parse, but keep the document alive until the message is done,
    /// since a tree an interceptor still holds may point into it.</summary>
    private void RetireJson()
    {
        RetireDocument();
        _json = null;
        _jsonState = JsonState.NotParsed;
    }

    private void RetireDocument()
    {
        if (_document is not null)
        {
            (_retiredDocuments ??= []).Add(_document);
            _document = null;
        }
    }

    private void ReleaseJson()
    {
        _document?.Dispose();
        _document = null;
        if (_retiredDocuments is { Count: > 0 })
        {
            foreach (var document in _retiredDocuments)
            {
                document.Dispose();
            }

            _retiredDocuments.Clear();
        }

        _json = null;
        _jsonState = JsonState.NotParsed;
    }

    private static WebSocketMessage SerializeJson(JsonNode? node)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, s_writerOptions))
        {
            if (node is null)
            {
                writer.WriteNullValue();
            }
            else
            {
                node.WriteTo(writer);
            }
        }

        return WebSocketMessage.FromText(buffer.WrittenMemory);
    }
}

/// <summary>How a pipeline ended for a message.</summary>
public enum MessageOutcome : byte
{
    /// <summary>The pipeline has not decided yet.</summary>
    None,

    /// <summary>The message reached its destination.</summary>
    Forwarded,

    /// <summary>An interceptor stopped the message.</summary>
    Dropped,

    /// <summary>An interceptor answered the source instead of forwarding.</summary>
    Replied,

    /// <summary>An interceptor closed the connection.</summary>
    Closed,

    /// <summary>An interceptor threw; the message was dropped.</summary>
    Failed,
}

/// <summary>Where a pipeline's messages go: the other end of the chain, and the way back to the source.</summary>
internal abstract class MessageSink
{
    public abstract ValueTask ForwardAsync(MessageContext context);

    public abstract void Reply(MessageContext context, WebSocketMessage message);
}
