using System.Net.WebSockets;
using System.Text;

namespace Sluice.Tests.Infrastructure;

/// <summary>Small helpers over <see cref="ClientWebSocket"/> for tests.</summary>
public static class WebSocketClient
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public static async Task<ClientWebSocket> ConnectAsync(Uri uri, Action<ClientWebSocketOptions>? configure = null)
    {
        var socket = new ClientWebSocket();
        configure?.Invoke(socket.Options);
        using var cts = new CancellationTokenSource(Timeout);
        await socket.ConnectAsync(uri, cts.Token);
        return socket;
    }

    public static Task SendTextAsync(this WebSocket socket, string text) =>
        socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);

    public static Task SendBinaryAsync(this WebSocket socket, byte[] bytes) =>
        socket.SendAsync(bytes, WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);

    /// <summary>Receives one whole message, or the close.</summary>
    public static async Task<Received> ReceiveMessageAsync(this WebSocket socket, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeout);
        var buffer = new byte[64 * 1024];
        using var payload = new MemoryStream();
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer, cts.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return new Received(result.MessageType, [], socket.CloseStatus, socket.CloseStatusDescription);
            }

            payload.Write(buffer, 0, result.Count);
            if (result.EndOfMessage)
            {
                return new Received(result.MessageType, payload.ToArray(), null, null);
            }
        }
    }

    public static async Task<string> ReceiveTextAsync(this WebSocket socket, TimeSpan? timeout = null)
    {
        var received = await socket.ReceiveMessageAsync(timeout);
        Assert.Equal(WebSocketMessageType.Text, received.Type);
        return received.Text;
    }

    /// <summary>Waits for the server's close frame, skipping data messages, and returns its status.</summary>
    public static async Task<(WebSocketCloseStatus? Status, string? Reason)> ReceiveCloseAsync(this WebSocket socket, TimeSpan? timeout = null)
    {
        while (true)
        {
            var received = await socket.ReceiveMessageAsync(timeout);
            if (received.Type == WebSocketMessageType.Close)
            {
                return (received.CloseStatus, received.CloseReason);
            }
        }
    }

    public sealed record Received(WebSocketMessageType Type, byte[] Payload, WebSocketCloseStatus? CloseStatus, string? CloseReason)
    {
        public string Text => Encoding.UTF8.GetString(Payload);
    }
}
