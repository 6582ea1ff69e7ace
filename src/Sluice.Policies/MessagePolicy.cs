using System.Buffers;
using System.Net.WebSockets;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Sluice.Policies;

/// <summary>
/// The base of Sluice's message policies: an interceptor with a name that applies the same check to messages
/// in whichever direction it is placed, and ends a failing message with a <see cref="PolicyAction"/>. Derive from
/// it to write your own policy, or implement <see cref="IMessageInterceptor"/> directly.
/// </summary>
public abstract class MessagePolicy : IMessageInterceptor
{
    private static readonly JsonWriterOptions s_writerOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Creates a policy named <paramref name="name"/>, the name its error replies and metrics carry.</summary>
    protected MessagePolicy(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
    }

    /// <summary>Gets the policy's name: the key in the gateway file, or the type name (e.g. <c>size-limit</c>).</summary>
    public string Name { get; }

    /// <summary>
    /// Gets the control frames the policy asks to see besides data messages; <see cref="PolicyPipelineExtensions.UsePolicy"/>
    /// opts its registration in to them (<see cref="InterceptorRegistration.WithControlFrames"/>). Default: none.
    /// </summary>
    public virtual ControlFrames ControlFrames => ControlFrames.None;

    /// <summary>
    /// Gets whether the policy runs on the fragments of streamed messages (<see cref="WebSocketEndpointOptions.Streaming"/>),
    /// once per fragment; <see cref="PolicyPipelineExtensions.UsePolicy"/> registers it so. False by default: the policy is
    /// skipped for streamed messages (and the skip counted), as a policy that reads the whole message must be.
    /// </summary>
    public virtual bool HandlesFragments => false;

    /// <inheritdoc />
    public ValueTask InboundAsync(MessageContext context, MessageDelegate next) => ApplyAsync(context, next);

    /// <inheritdoc />
    public ValueTask OutboundAsync(MessageContext context, MessageDelegate next) => ApplyAsync(context, next);

    /// <summary>Checks or changes the message; calls <paramref name="next"/> to forward it.</summary>
    protected abstract ValueTask ApplyAsync(MessageContext context, MessageDelegate next);

    /// <summary>
    /// Ends a message that failed the check: drops it, replies to its source with the contract's error frame
    /// (<paramref name="status"/> and <paramref name="message"/>), or closes the connection with
    /// <paramref name="closeStatus"/>. The caller returns without calling next.
    /// </summary>
    /// <remarks>The message is cut to <see cref="MaxErrorMessageLength"/> characters: it may quote the client's input.</remarks>
    protected void Reject(MessageContext context, PolicyAction action, int status, string message, WebSocketCloseStatus closeStatus)
    {
        ArgumentNullException.ThrowIfNull(context);
        message = Shorten(message, MaxErrorMessageLength);
        switch (action)
        {
            case PolicyAction.Reply:
                context.Reply(ErrorFrame(Name, status, message));
                context.Drop(message);
                break;
            case PolicyAction.Close:
                context.Close(closeStatus, message);
                break;
            default:
                context.Drop(message);
                break;
        }
    }

    /// <summary>
    /// The longest error message, in UTF-16 characters, that <see cref="Reject"/> sends or logs. With JSON escapes
    /// (six bytes at most per character) an error frame stays within 4 KiB, whatever the message that caused it.
    /// </summary>
    public const int MaxErrorMessageLength = 512;

    /// <summary><paramref name="text"/> cut to <paramref name="max"/> characters (ending with an ellipsis), never inside a surrogate pair.</summary>
    internal static string Shorten(string text, int max)
    {
        if (text.Length <= max)
        {
            return text;
        }

        var cut = max - 1;
        if (char.IsHighSurrogate(text[cut - 1]))
        {
            cut--;
        }

        return string.Concat(text.AsSpan(0, cut), "…");
    }

    /// <summary>The contract's error frame: <c>{"error":{"policy":"NAME","status":STATUS,"message":"..."}}</c>.</summary>
    public static WebSocketMessage ErrorFrame(string policy, int status, string message)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer, s_writerOptions))
        {
            writer.WriteStartObject();
            writer.WriteStartObject("error");
            writer.WriteString("policy", policy);
            writer.WriteNumber("status", status);
            writer.WriteString("message", message);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return WebSocketMessage.FromText(buffer.WrittenMemory);
    }
}
