using System.Buffers;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using Sluice.Protocol;

namespace Sluice.Proxy;

/// <summary>What the proxy asks of a backend when it connects.</summary>
internal sealed class BackendConnectRequest
{
    public required Uri Uri { get; init; }

    public required IReadOnlyList<string> SubProtocols { get; init; }

    public required IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; }

    public required bool OfferDeflate { get; init; }

    public required TimeSpan Timeout { get; init; }

    public Func<Uri, SslClientAuthenticationOptions>? SslOptions { get; init; }
}

/// <summary>A backend WebSocket after a successful handshake.</summary>
internal sealed class BackendConnection(Stream stream, Socket socket, byte[] leftover, string? subProtocol, WebSocketDeflateOptions? deflate)
{
    public Stream Stream { get; } = stream;

    public Socket Socket { get; } = socket;

    /// <summary>Bytes the backend sent right after its 101 response: the start of its first frames.</summary>
    public byte[] Leftover { get; } = leftover;

    public string? SubProtocol { get; } = subProtocol;

    public WebSocketDeflateOptions? Deflate { get; } = deflate;
}

/// <summary>The backend could not be reached or refused the handshake; the client gets 502.</summary>
internal sealed class BackendConnectException(string reason, Exception? inner = null) : Exception(reason, inner)
{
    /// <summary>A short label for metrics: refused, timeout, dns, tls, rejected, invalid.</summary>
    public string Kind { get; init; } = "error";
}

/// <summary>
/// Connects to a backend and performs the client side of the opening handshake (RFC 6455 4.1) on a plain
/// socket. Sluice does this itself, instead of through ClientWebSocket, to offer the client's subprotocols
/// and headers exactly, to keep the connection small (no HttpClient connection buffers per backend leg) and to
/// frame the backend leg with the same code as the client leg.
/// </summary>
internal static class BackendConnector
{
    private const int MaxResponseHeaderBytes = 16 * 1024;

    // TEMPORARY (measurement): SLUICE_BACKEND_HANDSHAKE=handler selects the SocketsHttpHandler connector.
    private static readonly bool s_useHandler = Environment.GetEnvironmentVariable("SLUICE_BACKEND_HANDSHAKE") == "handler";

    public static Task<BackendConnection> ConnectAsync(BackendConnectRequest request, CancellationToken cancellationToken) =>
        s_useHandler ? HttpHandlerBackendConnector.ConnectAsync(request, cancellationToken) : ConnectRawAsync(request, cancellationToken);

    private static async Task<BackendConnection> ConnectRawAsync(BackendConnectRequest request, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(request.Timeout);
        var uri = request.Uri;
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            var port = uri.IsDefaultPort ? (uri.Scheme == "wss" ? 443 : 80) : uri.Port;
            EndPoint endPoint = IPAddress.TryParse(uri.IdnHost, out var address) ? new IPEndPoint(address, port) : new DnsEndPoint(uri.IdnHost, port);
            await socket.ConnectAsync(endPoint, timeout.Token);
            stream = new NetworkStream(socket, ownsSocket: true);

            if (uri.Scheme == "wss")
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                var options = request.SslOptions?.Invoke(uri) ?? new SslClientAuthenticationOptions();
                options.TargetHost ??= uri.IdnHost;
                await ssl.AuthenticateAsClientAsync(options, timeout.Token);
            }

            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
            await stream.WriteAsync(BuildRequest(request, key), timeout.Token);
            return await ReadResponseAsync(stream, socket, request, key, timeout.Token);
        }
        catch (Exception ex) when (ex is not BackendConnectException)
        {
            if (stream is not null)
            {
                await stream.DisposeAsync();
            }
            else
            {
                socket.Dispose();
            }

            throw Describe(ex, request, cancellationToken.IsCancellationRequested);
        }
        catch
        {
            if (stream is not null)
            {
                await stream.DisposeAsync();
            }
            else
            {
                socket.Dispose();
            }

            throw;
        }
    }

    private static BackendConnectException Describe(Exception ex, BackendConnectRequest request, bool callerCancelled) => ex switch
    {
        OperationCanceledException when !callerCancelled =>
            new BackendConnectException($"no handshake within {request.Timeout.TotalMilliseconds:0} ms", ex) { Kind = "timeout" },
        SocketException { SocketErrorCode: SocketError.ConnectionRefused } =>
            new BackendConnectException("connection refused", ex) { Kind = "refused" },
        SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.TryAgain or SocketError.NoData } =>
            new BackendConnectException($"host '{request.Uri.Host}' not found", ex) { Kind = "dns" },
        System.Security.Authentication.AuthenticationException =>
            new BackendConnectException($"TLS handshake failed: {ex.Message}", ex) { Kind = "tls" },
        _ => new BackendConnectException(ex.Message, ex),
    };

    private static byte[] BuildRequest(BackendConnectRequest request, string key)
    {
        var uri = request.Uri;
        var builder = new StringBuilder(512);
        builder.Append("GET ").Append(uri.PathAndQuery).Append(" HTTP/1.1\r\n");
        builder.Append("Host: ").Append(uri.IsDefaultPort ? uri.IdnHost : $"{uri.IdnHost}:{uri.Port}").Append("\r\n");
        builder.Append("Upgrade: websocket\r\nConnection: Upgrade\r\n");
        builder.Append("Sec-WebSocket-Key: ").Append(key).Append("\r\n");
        builder.Append("Sec-WebSocket-Version: 13\r\n");
        if (request.SubProtocols.Count > 0)
        {
            builder.Append("Sec-WebSocket-Protocol: ").AppendJoin(", ", request.SubProtocols).Append("\r\n");
        }

        if (request.OfferDeflate)
        {
            builder.Append("Sec-WebSocket-Extensions: ").Append(DeflateNegotiation.ClientOffer).Append("\r\n");
        }

        foreach (var (name, value) in request.Headers)
        {
            // Kestrel already refuses CR and LF in request headers; this guards values that came from elsewhere.
            if (name.AsSpan().IndexOfAny('\r', '\n') >= 0 || value.AsSpan().IndexOfAny('\r', '\n') >= 0)
            {
                throw new BackendConnectException($"header '{name}' contains a line break") { Kind = "invalid" };
            }

            builder.Append(name).Append(": ").Append(value).Append("\r\n");
        }

        builder.Append("\r\n");
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    private static async Task<BackendConnection> ReadResponseAsync(Stream stream, Socket socket, BackendConnectRequest request, string key, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            var length = 0;
            int headerEnd;
            while ((headerEnd = buffer.AsSpan(0, length).IndexOf("\r\n\r\n"u8)) < 0)
            {
                if (length == buffer.Length)
                {
                    if (length >= MaxResponseHeaderBytes)
                    {
                        throw new BackendConnectException($"the handshake response is larger than {MaxResponseHeaderBytes} bytes") { Kind = "invalid" };
                    }

                    var larger = ArrayPool<byte>.Shared.Rent(length * 2);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }

                var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken);
                if (read == 0)
                {
                    throw new BackendConnectException("the backend closed the connection during the handshake") { Kind = "rejected" };
                }

                length += read;
            }

            var head = Encoding.Latin1.GetString(buffer, 0, headerEnd);
            var lines = head.Split("\r\n");
            var status = lines[0].Split(' ', 3);
            if (status.Length < 2 || !status[0].StartsWith("HTTP/1.", StringComparison.Ordinal))
            {
                throw new BackendConnectException("the backend did not answer with HTTP/1.1") { Kind = "invalid" };
            }

            if (status[1] != "101")
            {
                throw new BackendConnectException($"the backend answered {status[1]}{(status.Length > 2 ? " " + status[2] : string.Empty)} instead of 101") { Kind = "rejected" };
            }

            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var line in lines.AsSpan(1))
            {
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0)
                {
                    var name = line[..colon].Trim();
                    var value = line[(colon + 1)..].Trim();
                    headers[name] = headers.TryGetValue(name, out var existing) ? existing + ", " + value : value;
                }
            }

            if (!headers.TryGetValue("Upgrade", out var upgrade) || !ServerHandshake.HasToken(upgrade, "websocket")
                || !headers.TryGetValue("Connection", out var connection) || !ServerHandshake.HasToken(connection, "upgrade"))
            {
                throw new BackendConnectException("the backend's 101 response lacks Upgrade: websocket or Connection: Upgrade") { Kind = "invalid" };
            }

            if (!headers.TryGetValue("Sec-WebSocket-Accept", out var accept) || accept != ServerHandshake.ComputeAccept(key))
            {
                throw new BackendConnectException("the backend's Sec-WebSocket-Accept does not match the key") { Kind = "invalid" };
            }

            headers.TryGetValue("Sec-WebSocket-Protocol", out var subProtocol);
            if (!string.IsNullOrEmpty(subProtocol) && !request.SubProtocols.Contains(subProtocol, StringComparer.Ordinal))
            {
                throw new BackendConnectException($"the backend chose subprotocol '{subProtocol}', which the client did not offer") { Kind = "invalid" };
            }

            WebSocketDeflateOptions? deflate = null;
            if (headers.TryGetValue("Sec-WebSocket-Extensions", out var extensions) && !string.IsNullOrWhiteSpace(extensions))
            {
                if (!request.OfferDeflate)
                {
                    throw new BackendConnectException($"the backend accepted extensions that were not offered: {extensions}") { Kind = "invalid" };
                }

                try
                {
                    deflate = DeflateNegotiation.ParseServerResponse(extensions);
                }
                catch (WebSocketException ex)
                {
                    throw new BackendConnectException(ex.Message, ex) { Kind = "invalid" };
                }
            }

            var leftover = buffer.AsSpan(headerEnd + 4, length - headerEnd - 4).ToArray();
            return new BackendConnection(stream, socket, leftover, string.IsNullOrEmpty(subProtocol) ? null : subProtocol, deflate);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
