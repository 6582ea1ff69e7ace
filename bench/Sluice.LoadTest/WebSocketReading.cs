using System.Net.WebSockets;

namespace Sluice.LoadTest;

internal static class WebSocketReading
{
    /// <summary>
    /// Reads one whole message into <paramref name="buffer"/> (a message larger than the buffer is cut at its size, which
    /// the load never sends). Returns its length and type; the type is Close when the peer closed.
    /// </summary>
    public static async ValueTask<(int Length, WebSocketMessageType Type)> ReceiveMessageAsync(this WebSocket socket, byte[] buffer)
    {
        var length = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None);
            length += result.Count;
        }
        while (!result.EndOfMessage && length < buffer.Length);

        return (length, result.MessageType);
    }
}
