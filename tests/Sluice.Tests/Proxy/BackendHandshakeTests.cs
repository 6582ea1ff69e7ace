using System.Net;
using System.Net.Sockets;
using System.Text;
using Sluice.Protocol;
using Sluice.Proxy;

namespace Sluice.Tests.Proxy;

/// <summary>
/// The backend handshake (BackendConnector, over SocketsHttpHandler) against scripted TCP backends: every answer a
/// backend can give maps to its failure kind, and what the backend sends right after its 101 reaches the leg.
/// </summary>
public class BackendHandshakeTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    public static TheoryData<string, string, string> Failures => new()
    {
        { "403", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "rejected" },
        { "close", string.Empty, "rejected" },
        { "no-upgrade", "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n\r\n", "invalid" },
        { "bad-accept", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n", "invalid" },
        { "subprotocol", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: other\r\n\r\n", "invalid" },
        { "extension", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", "invalid" },
        { "garbage", "SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid" },
        { "huge-head", "HTTP/1.1 101 Switching Protocols\r\nX-Big: " + new string('a', 20 * 1024) + "\r\n\r\n", "invalid" },
    };

    [Theory]
    [MemberData(nameof(Failures))]
    public async Task EachBackendAnswer_MapsToItsFailureKind(string name, string response, string kind)
    {
        await using var backend = await ScriptedBackend.StartAsync(response);

        var ex = await Assert.ThrowsAsync<BackendConnectException>(() => BackendConnector.ConnectAsync(Request(backend.Uri), CancellationToken.None));

        Assert.True(kind == ex.Kind, $"{name}: expected {kind}, got {ex.Kind} ({ex.Message}) after {backend.Connections} connections");
        Assert.True(backend.Connections == 1, $"{name}: {backend.Connections} connections");
    }

    [Fact]
    public async Task ClosedPort_IsRefused_AndUnknownHost_IsDns()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var refused = await Assert.ThrowsAsync<BackendConnectException>(() => BackendConnector.ConnectAsync(Request(new Uri($"ws://127.0.0.1:{port}/")), CancellationToken.None));
        var dns = await Assert.ThrowsAsync<BackendConnectException>(() => BackendConnector.ConnectAsync(Request(new Uri("ws://no-such-host.invalid/")), CancellationToken.None));

        Assert.Equal("refused", refused.Kind);
        Assert.Equal("dns", dns.Kind);
    }

    [Fact]
    public async Task BackendThatNeverAnswers_IsTimeout()
    {
        await using var backend = await ScriptedBackend.StartAsync(response: null);

        var ex = await Assert.ThrowsAsync<BackendConnectException>(() => BackendConnector.ConnectAsync(Request(backend.Uri, TimeSpan.FromMilliseconds(300)), CancellationToken.None));

        Assert.Equal("timeout", ex.Kind);
        Assert.Contains("no handshake within 300 ms", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HeaderWithALineBreak_IsInvalid_AndNothingIsSent()
    {
        await using var backend = await ScriptedBackend.StartAsync(response: null);
        var request = Request(backend.Uri);
        request = new BackendConnectRequest
        {
            Uri = request.Uri,
            SubProtocols = request.SubProtocols,
            Headers = [new("X-Test", "a\r\nX-Injected: 1")],
            OfferDeflate = false,
            Timeout = request.Timeout,
        };

        var ex = await Assert.ThrowsAsync<BackendConnectException>(() => BackendConnector.ConnectAsync(request, CancellationToken.None));

        Assert.Equal("invalid", ex.Kind);
        Assert.Null(backend.RequestHead);
    }

    [Fact]
    public async Task FramesSentWithThe101_ReachTheLeg_AndTheRequestCarriesTheOfferAndHeaders()
    {
        // A text frame "hi" in the same write as the 101: the handler reads it with the response head; the leg gets it
        // as the connection's leftover, then reads the socket.
        var frame = Encoding.Latin1.GetString([0x81, 0x02, (byte)'h', (byte)'i']);
        await using var backend = await ScriptedBackend.StartAsync(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat.v1\r\n\r\n" + frame);

        var connection = await BackendConnector.ConnectAsync(Request(backend.Uri), CancellationToken.None);
        await using var stream = connection.Stream;

        Assert.Equal("chat.v1", connection.SubProtocol);
        Assert.Null(connection.Deflate);
        var received = new byte[4];
        using var cts = new CancellationTokenSource(s_wait);
        await new PrefixedStream(connection.Leftover, stream).ReadExactlyAsync(received, cts.Token);
        Assert.Equal(Encoding.Latin1.GetBytes(frame), received);
        var head = backend.RequestHead!;
        Assert.StartsWith("GET /path?q=1 HTTP/1.1\r\n", head, StringComparison.Ordinal);
        Assert.Contains($"\r\nHost: {backend.Uri.Authority}\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nSec-WebSocket-Protocol: chat.v1, chat.v2\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nX-Test: 1\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nSec-WebSocket-Version: 13\r\n", head, StringComparison.Ordinal);

        // The leg aborts through the socket: a pending read ends at once.
        var pending = stream.ReadAsync(new byte[16]).AsTask();
        connection.Abort();
        await Assert.ThrowsAnyAsync<Exception>(async () => { if (await pending.WaitAsync(s_wait) == 0) { throw new EndOfStreamException(); } });
    }

    [Fact]
    public async Task DirectWsBackend_IsReadOnItsOwnSocket_AZeroByteReadWaitsForData()
    {
        // The handler's upgraded stream answers a zero-byte read at once, so a leg on it could never give its read
        // buffer back while the backend is quiet; on the socket's own stream the read waits for data.
        await using var backend = await ScriptedBackend.StartAsync(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        var connection = await BackendConnector.ConnectAsync(Request(backend.Uri), CancellationToken.None);
        await using var stream = connection.Stream;
        Assert.Empty(connection.Leftover);

        var zero = stream.ReadAsync(Memory<byte>.Empty).AsTask();
        await Task.Delay(200);
        Assert.False(zero.IsCompleted);

        await backend.SendAsync([0x81, 0x02, (byte)'o', (byte)'k']);
        Assert.Equal(0, await zero.WaitAsync(s_wait));
        var received = new byte[4];
        using var cts = new CancellationTokenSource(s_wait);
        await stream.ReadExactlyAsync(received, cts.Token);
        Assert.Equal([0x81, 0x02, (byte)'o', (byte)'k'], received);

        // Writes reach the backend on the same socket.
        await stream.WriteAsync(new byte[] { 0x88, 0x80, 1, 2, 3, 4 }, cts.Token);
        Assert.Equal([0x88, 0x80, 1, 2, 3, 4], await backend.ReceiveAsync(6).WaitAsync(s_wait));
    }

    private static BackendConnectRequest Request(Uri uri, TimeSpan? timeout = null) => new()
    {
        Uri = new Uri(uri, "/path?q=1"),
        SubProtocols = ["chat.v1", "chat.v2"],
        Headers = [new("X-Test", "1")],
        OfferDeflate = false,
        Timeout = timeout ?? s_wait,
    };

    /// <summary>One TCP connection: reads the request head, answers with the script ({accept} filled in), stays open.</summary>
    private sealed class ScriptedBackend : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly List<Socket> _sockets = [];
        private readonly TaskCompletionSource _answered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private Task? _serve;

        public Uri Uri => new($"ws://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/");

        public string? RequestHead { get; private set; }

        public static Task<ScriptedBackend> StartAsync(string? response)
        {
            var backend = new ScriptedBackend();
            backend._listener.Start();
            backend._serve = backend.AcceptAsync(response);
            return Task.FromResult(backend);
        }

        public int Connections { get; private set; }

        /// <summary>Sends bytes on the last connection, after its script.</summary>
        public async Task SendAsync(byte[] bytes)
        {
            await _answered.Task.WaitAsync(s_wait);
            await LastSocket().SendAsync(bytes);
        }

        /// <summary>Receives exactly <paramref name="count"/> bytes on the last connection.</summary>
        public async Task<byte[]> ReceiveAsync(int count)
        {
            await _answered.Task.WaitAsync(s_wait);
            var socket = LastSocket();
            var bytes = new byte[count];
            var total = 0;
            while (total < count)
            {
                var read = await socket.ReceiveAsync(bytes.AsMemory(total));
                if (read == 0)
                {
                    throw new EndOfStreamException();
                }

                total += read;
            }

            return bytes;
        }

        private Socket LastSocket()
        {
            lock (_sockets)
            {
                return _sockets[^1];
            }
        }

        private async Task AcceptAsync(string? response)
        {
            var served = new List<Task>();
            try
            {
                while (true)
                {
                    var socket = await _listener.AcceptSocketAsync();
                    Connections++;
                    lock (_sockets)
                    {
                        _sockets.Add(socket);
                    }

                    served.Add(ServeAsync(socket, response));
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }

            await Task.WhenAll(served);
        }

        private async Task ServeAsync(Socket socket, string? response)
        {
            try
            {

                var head = new StringBuilder();
                var buffer = new byte[4096];
                while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var read = await socket.ReceiveAsync(buffer);
                    if (read == 0)
                    {
                        return;
                    }

                    head.Append(Encoding.Latin1.GetString(buffer, 0, read));
                }

                RequestHead = head.ToString();
                if (response is null)
                {
                    return;
                }

                if (response.Length == 0)
                {
                    socket.Close();
                    return;
                }

                var key = RequestHead.Split("\r\n").First(l => l.StartsWith("Sec-WebSocket-Key:", StringComparison.OrdinalIgnoreCase))[18..].Trim();
                await socket.SendAsync(Encoding.Latin1.GetBytes(response.Replace("{accept}", ServerHandshake.ComputeAccept(key), StringComparison.Ordinal)));
                _answered.TrySetResult();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            lock (_sockets)
            {
                foreach (var socket in _sockets)
                {
                    socket.Dispose();
                }
            }

            await _serve!.WaitAsync(s_wait);
        }
    }
}
