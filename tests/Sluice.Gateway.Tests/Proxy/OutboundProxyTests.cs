using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Proxy;

/// <summary>
/// The backend handshake runs through SocketsHttpHandler, so the gateway honours the standard outbound proxy variables
/// (HTTP_PROXY for ws://, HTTPS_PROXY for wss://, NO_PROXY): a ws:// backend is reached through a CONNECT tunnel.
/// </summary>
public class OutboundProxyTests
{
    [Fact]
    public async Task HttpProxyVariable_SendsTheBackendLegThroughACONNECTTunnel()
    {
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Python);
        await using var proxy = ConnectProxy.Start(backendPort: backend.Port);
        using var folder = new ConfigFolder();
        // backend.test resolves nowhere but in the proxy: the connection can only work through the tunnel.
        var path = folder.Write($$"""
            { "routes": [ { "path": "/p", "proxy": { "target": "ws://backend.test:{{backend.Port}}/echo" } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path, new Dictionary<string, string>
        {
            ["HTTP_PROXY"] = $"http://127.0.0.1:{proxy.Port}",
            ["NO_PROXY"] = string.Empty,
        });

        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/p"));
        await client.SendTextAsync("through the tunnel");

        Assert.Equal("through the tunnel", await client.ReceiveTextAsync());
        Assert.Equal([$"CONNECT backend.test:{backend.Port} HTTP/1.1"], proxy.Requests);
    }

    [Fact]
    public async Task LoopbackBackend_BypassesTheProxy_EvenWithoutNoProxy()
    {
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Python);
        await using var proxy = ConnectProxy.Start(backendPort: backend.Port);
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [ { "path": "/p", "proxy": { "target": "ws://{{backend.Authority}}/echo" } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path, new Dictionary<string, string>
        {
            ["HTTP_PROXY"] = $"http://127.0.0.1:{proxy.Port}",
            ["NO_PROXY"] = string.Empty,
        });

        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/p"));
        await client.SendTextAsync("direct");

        Assert.Equal("direct", await client.ReceiveTextAsync());
        Assert.Empty(proxy.Requests);
    }

    /// <summary>A minimal HTTP CONNECT proxy: records each request line, tunnels every host to 127.0.0.1.</summary>
    private sealed class ConnectProxy : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly ConcurrentBag<Socket> _sockets = [];
        private readonly ConcurrentQueue<string> _requests = new();
        private Task? _accept;

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public string[] Requests => [.. _requests];

        public static ConnectProxy Start(int backendPort)
        {
            var proxy = new ConnectProxy();
            proxy._listener.Start();
            proxy._accept = proxy.AcceptAsync(backendPort);
            return proxy;
        }

        private async Task AcceptAsync(int backendPort)
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptSocketAsync();
                    _sockets.Add(client);
                    _ = Task.Run(() => TunnelAsync(client, backendPort));
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        }

        private async Task TunnelAsync(Socket client, int backendPort)
        {
            try
            {
                var head = new StringBuilder();
                var buffer = new byte[1];
                while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
                {
                    if (await client.ReceiveAsync(buffer) == 0)
                    {
                        return;
                    }

                    head.Append((char)buffer[0]);
                }

                var requestLine = head.ToString().Split("\r\n")[0];
                _requests.Enqueue(requestLine);
                if (!requestLine.StartsWith("CONNECT ", StringComparison.Ordinal))
                {
                    await client.SendAsync("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"u8.ToArray());
                    return;
                }

                var upstream = new Socket(SocketType.Stream, ProtocolType.Tcp);
                _sockets.Add(upstream);
                await upstream.ConnectAsync(IPAddress.Loopback, backendPort);
                await client.SendAsync("HTTP/1.1 200 Connection established\r\n\r\n"u8.ToArray());
                using var a = new NetworkStream(client, ownsSocket: false);
                using var b = new NetworkStream(upstream, ownsSocket: false);
                await Task.WhenAny(a.CopyToAsync(b), b.CopyToAsync(a));
            }
            catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
            {
            }
            finally
            {
                client.Dispose();
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }

            await _accept!.WaitAsync(TimeSpan.FromSeconds(30));
        }
    }
}
