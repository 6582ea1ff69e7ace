using System.Buffers.Binary;

namespace Sluice.Topics;

/// <summary>
/// A published message framed once, as a server sends it (unmasked), so that the same bytes go to every
/// subscriber. Immutable and shared; the GC reclaims it once the last subscriber's queue lets go.
/// </summary>
internal sealed class TopicFrame
{
    private TopicFrame(WebSocketMessage message, byte[] bytes, int headerLength, long offset)
    {
        Message = message;
        Bytes = bytes;
        HeaderLength = headerLength;
        Offset = offset;
    }

    /// <summary>The message's offset in its topic's history, or 0 for a topic without history (or an event like join).</summary>
    public long Offset { get; }

    /// <summary>The message, owning its payload, for subscribers whose route runs outbound interceptors.</summary>
    public WebSocketMessage Message { get; }

    /// <summary>Header and payload, ready to write to a connection that frames itself.</summary>
    public byte[] Bytes { get; }

    public int HeaderLength { get; }

    public static TopicFrame Create(WebSocketMessage message, long offset = 0)
    {
        var payload = message.Payload.Span;
        var headerLength = payload.Length < 126 ? 2 : payload.Length <= ushort.MaxValue ? 4 : 10;
        var bytes = new byte[headerLength + payload.Length];
        bytes[0] = (byte)(0x80 | (byte)message.Type);
        if (headerLength == 2)
        {
            bytes[1] = (byte)payload.Length;
        }
        else if (headerLength == 4)
        {
            bytes[1] = 126;
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), (ushort)payload.Length);
        }
        else
        {
            bytes[1] = 127;
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(2), (ulong)payload.Length);
        }

        payload.CopyTo(bytes.AsSpan(headerLength));

        // The frame's payload bytes double as the message's: one copy of the published data, whatever happens.
        var owned = WebSocketMessage.Create(message.Type, bytes.AsMemory(headerLength));
        return new TopicFrame(owned, bytes, headerLength, offset);
    }
}
