using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using static Sluice.Client.Tests.SluiceClientTests;

namespace Sluice.Client.Tests;

/// <summary>The client against a tiny raw WebSocket server written here, which answers what no gateway would.</summary>
public sealed partial class RawServerTests : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(2));
    private int _connections;

    public RawServerTests() => _listener.Start();

    private Uri Uri => new($"ws://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/topics");

    [Fact]
    public async Task GarbageFrames_AreErrorEvents_AndTheConnectionGoesOn()
    {
        var server = ServeAsync(async (socket, _) =>
        {
            var subscribe = await ReceiveTextAsync(socket);
            Assert.Contains("\"subscribe\"", subscribe, StringComparison.Ordinal);
            await socket.SendAsync(new byte[] { 0, 1, 2, 255 }, WebSocketMessageType.Binary, true, _stop.Token);
            foreach (var garbage in new[] { "not json {", "[1,2,3]", "null", """{"op":42}""", """{"op":"teleport","topic":"room"}""", """{"error":"not an object"}""" })
            {
                await SendTextAsync(socket, garbage);
            }

            await SendTextAsync(socket, """{"op":"subscribed","topic":"room"}""");
            await SendTextAsync(socket, """{"op":"message","topic":"room","data":"real","offset":"x","epoch":7}""");
            Assert.Equal("", await ReceiveTextAsync(socket)); // nothing more until the client closes: no second subscribe
        });
        await using var a = new Recorder(Uri);
        await a.Client.ConnectAsync();

        Assert.Equal("room", (await a.Client.SubscribeAsync("room").WaitAsync(TimeSpan.FromSeconds(30))).Topic);
        await Eventually(() => a.Messages.Count == 1, "the real message after the garbage");

        Assert.Equal("real", a.Messages.Single().Data.GetString());
        Assert.Null(a.Messages.Single().Offset); // an offset that is no number is not taken
        Assert.Null(a.Client.GetPosition("room"));
        Assert.True(SluiceClientState.Connected == a.Client.State, string.Join(", ", a.Changes) + " / " + string.Join(", ", a.Errors.Select(e => e.Message)));
        Assert.Equal(7, a.Errors.Count);
        await a.Client.CloseAsync();
        await server.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task ABrokenFrame_DropsTheConnection_AndTheClientReconnects()
    {
        var server = ServeAsync(async (socket, stream) =>
        {
            await ReceiveTextAsync(socket);
            if (Interlocked.Increment(ref _connections) == 1)
            {
                // Opcode 3 is reserved: no WebSocket may send it, so the client must drop the connection.
                await stream.WriteAsync(new byte[] { 0x83, 0x00 }, _stop.Token);
                await stream.FlushAsync(_stop.Token);
                await ReceiveTextAsync(socket).ContinueWith(_ => { }, TaskScheduler.Default);
                return;
            }

            await SendTextAsync(socket, """{"op":"subscribed","topic":"room"}""");
            await ReceiveTextAsync(socket);
        }, connections: 2);
        await using var a = new Recorder(Uri);
        await a.Client.ConnectAsync();
        var first = a.Client.SubscribeAsync("room");

        await Eventually(() => a.Subscriptions.Count == 1, "the resubscription on a second connection");
        var disconnected = a.Changes.First(c => c.State == SluiceClientState.Disconnected);
        Assert.Equal(1006, (int?)disconnected.CloseStatus);
        Assert.Contains(SluiceClientState.Reconnecting, a.States);
        await Assert.ThrowsAsync<SluiceException>(() => first); // its connection went away before an answer
        Assert.Equal(SluiceClientState.Connected, a.Client.State);
        await a.Client.CloseAsync();
        await server.WaitAsync(TimeSpan.FromSeconds(30));
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        _stop.Dispose();
    }

    private async Task ServeAsync(Func<WebSocket, Stream, Task> serve, int connections = 1)
    {
        for (var i = 0; i < connections; i++)
        {
            using var tcp = await _listener.AcceptTcpClientAsync(_stop.Token);
            var stream = tcp.GetStream();
            await HandshakeAsync(stream);
            using var socket = WebSocket.CreateFromStream(stream, new WebSocketCreationOptions { IsServer = true });
            await serve(socket, stream);
        }
    }

    private async Task HandshakeAsync(NetworkStream stream)
    {
        var buffer = new byte[8192];
        var read = 0;
        while (!Encoding.ASCII.GetString(buffer, 0, read).Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var n = await stream.ReadAsync(buffer.AsMemory(read), _stop.Token);
            Assert.NotEqual(0, n);
            read += n;
        }

        var key = KeyHeader().Match(Encoding.ASCII.GetString(buffer, 0, read)).Groups[1].Value;
#pragma warning disable CA5350 // RFC 6455 fixes SHA-1 for the handshake; it protects nothing.
        var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
#pragma warning restore CA5350
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"), _stop.Token);
    }

    private Task SendTextAsync(WebSocket socket, string text) =>
        socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, _stop.Token);

    private async Task<string> ReceiveTextAsync(WebSocket socket)
    {
        var buffer = new byte[64 * 1024];
        var result = await socket.ReceiveAsync(buffer, _stop.Token);
        return result.MessageType == WebSocketMessageType.Close ? "" : Encoding.UTF8.GetString(buffer, 0, result.Count);
    }

    [GeneratedRegex(@"Sec-WebSocket-Key:\s*(\S+)", RegexOptions.IgnoreCase)]
    private static partial Regex KeyHeader();
}
