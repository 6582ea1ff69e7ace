namespace Sluice;

/// <summary>
/// Streams large binary messages fragment by fragment instead of holding them whole: once a binary message is longer
/// than <see cref="AboveBytes"/>, what has arrived of it is relayed at once and every later piece as it arrives, each
/// with <see cref="WebSocketMessage.IsFinal"/> telling whether it ends the message. Memory per connection stays bounded
/// by <see cref="AboveBytes"/> and the receive buffer, not by the message. Set it with
/// <see cref="WebSocketEndpointOptions.Streaming"/>.
/// </summary>
/// <remarks>
/// <para>Text messages are never streamed: they are checked as UTF-8 whole and stay limited by
/// <see cref="WebSocketEndpointOptions.MaxMessageBytes"/>. A binary message of up to <see cref="AboveBytes"/> is
/// still assembled and runs through every interceptor as a whole message.</para>
/// <para>Only interceptors registered with <see cref="InterceptorRegistration.HandlesFragments"/> see fragments; the
/// others are skipped for a streamed message (counted in <c>sluice.interceptor.skipped</c>). In proxy mode the
/// fragments go on to the other leg as one fragmented message, and nothing else is sent on that leg between them;
/// in host mode the handler receives each fragment (check <see cref="WebSocketMessage.IsFragment"/>).</para>
/// <para>A fragment that an interceptor drops before anything of its message went on drops the rest of the message;
/// one dropped after that closes the connection with 1008, since a message cannot be cut short.</para>
/// <para>Legs that negotiated permessage-deflate do not stream what they receive: a compressed message is limited by
/// <see cref="WebSocketEndpointOptions.MaxMessageBytes"/> once inflated.</para>
/// </remarks>
public sealed class WebSocketStreamingOptions
{
    /// <summary>Gets or sets the size above which a binary message is streamed, in bytes. Default: 1 MiB.</summary>
    public long AboveBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Gets or sets the largest streamed message, in bytes; a larger one closes the connection with 1009 as soon as its
    /// running size passes the limit. Default: 1 GiB.
    /// </summary>
    public long MaxBytes { get; set; } = 1024L * 1024 * 1024;

    internal WebSocketStreamingOptions Clone() => new() { AboveBytes = AboveBytes, MaxBytes = MaxBytes };

    internal void Validate(string pattern)
    {
        if (AboveBytes <= 0)
        {
            throw new InvalidOperationException($"{pattern}: Streaming.AboveBytes must be positive.");
        }

        if (MaxBytes < AboveBytes)
        {
            throw new InvalidOperationException($"{pattern}: Streaming.MaxBytes must be at least Streaming.AboveBytes.");
        }

        // The part of a message held before it starts streaming is one pooled array.
        if (AboveBytes > Array.MaxLength / 2)
        {
            throw new InvalidOperationException($"{pattern}: Streaming.AboveBytes must be at most {Array.MaxLength / 2}.");
        }
    }
}
