using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using Sluice.Protocol;

namespace Sluice.Proxy;

/// <summary>
/// Performs the client side of the opening handshake (RFC 6455 4.1) through a <see cref="SocketsHttpHandler"/>, as
/// YARP's HttpForwarder does: an HTTP/1.1 GET with the upgrade headers, whose 101 response's content stream is the
/// upgraded connection, except for a direct ws:// connection, whose socket the leg takes back after the 101
/// (<see cref="DetachableStream"/>). The handler brings outbound proxies (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY: a ws://
/// backend goes through a CONNECT tunnel), the TLS stack and HttpClient's metrics and events; the checks of the
/// response (accept key, subprotocol, extensions) stay Sluice's own.
/// </summary>
internal static class HttpHandlerBackendConnector
{
    private const int MaxResponseHeaderKiB = 16;

    private static readonly HttpRequestOptionsKey<SocketHolder> s_socketKey = new("Sluice.BackendSocket");

    // One handler for every backend leg of the process: it holds no connection (see PooledConnectionLifetime), only
    // settings. TLS options differ by route, so wss handshakes get a handler of their own (below).
    private static readonly HttpMessageInvoker s_plain = new(CreateHandler(sslOptions: null), disposeHandler: false);

    public static async Task<BackendConnection> ConnectAsync(BackendConnectRequest request, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(request.Timeout);
        var uri = request.Uri;
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
        var holder = new SocketHolder();
        using var message = BuildRequest(request, key, holder);
        HttpMessageInvoker? ownInvoker = null;
        HttpResponseMessage? response = null;
        Stream? stream = null;
        try
        {
            var invoker = s_plain;
            if (uri.Scheme == "wss" && request.SslOptions is not null)
            {
                // The route's own CA bundle or client certificate: a handler for this handshake alone, disposed when
                // it is over. Disposing a handler closes its idle connections only, never a stream it upgraded.
                ownInvoker = new HttpMessageInvoker(CreateHandler(request.SslOptions(uri)), disposeHandler: true);
                invoker = ownInvoker;
            }

            response = await invoker.SendAsync(message, timeout.Token);
            if (response.StatusCode != HttpStatusCode.SwitchingProtocols)
            {
                throw new BackendConnectException($"the backend answered {(int)response.StatusCode} {response.ReasonPhrase} instead of 101")
                {
                    Kind = "rejected",
                    BlamesBackend = (int)response.StatusCode is < 400 or >= 500,
                };
            }

            stream = await response.Content.ReadAsStreamAsync(timeout.Token);
            var (subProtocol, deflate) = Check(response, request, key);
            if (holder.Detachable is { } direct)
            {
                // A direct ws:// connection: take the socket back from the handler, with the bytes its read buffer
                // holds past the 101, and let the handler's connection (its buffers, the request and response) go.
                direct.Detach();
                byte[] leftover;
                try
                {
                    leftover = await ReadBufferedAsync(stream, timeout.Token);
                }
                catch
                {
                    // Detached, the handler's disposal no longer closes the socket.
                    await direct.Inner.DisposeAsync();
                    throw;
                }

                return new BackendConnection(direct.Inner, holder.Socket, leftover, subProtocol, deflate);
            }

            // Not disposed: disposing a 101 response disposes its content stream, the upgraded connection. Bytes the
            // backend sent past its 101 stay in the handler's buffer and are read through the stream. The socket is
            // unknown through a proxy's tunnel (the handler opens it for its own CONNECT request).
            var connection = new BackendConnection(stream, holder.Socket, [], subProtocol, deflate);
            response = null;
            stream = null;
            return connection;
        }
        catch (Exception ex) when (ex is not BackendConnectException)
        {
            throw Describe(ex, request, cancellationToken.IsCancellationRequested);
        }
        finally
        {
            if (stream is not null)
            {
                await stream.DisposeAsync();
            }

            response?.Dispose();
            ownInvoker?.Dispose();
        }
    }

    private static SocketsHttpHandler CreateHandler(SslClientAuthenticationOptions? sslOptions)
    {
        var handler = new SocketsHttpHandler
        {
            // A backend leg is one upgrade on one connection: after a refusal its connection is closed rather than
            // pooled, so that every handshake has a fresh socket of its own (the one ConnectCallback records).
            PooledConnectionLifetime = TimeSpan.Zero,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            MaxResponseHeadersLength = MaxResponseHeaderKiB,
            // Sluice writes traceparent itself (the connection's activity); the handler must not replace it.
            ActivityHeadersPropagator = null,
            ConnectCallback = ConnectAsync,
            Proxy = LoopbackBypassingProxy.Instance,
        };
        if (sslOptions is not null)
        {
            handler.SslOptions = sslOptions;
        }

        return handler;
    }

    /// <summary>
    /// The proxy of HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY, except for loopback backends: a gateway started
    /// with a proxy meant for its egress must not send a backend on its own host through it.
    /// </summary>
    private sealed class LoopbackBypassingProxy(IWebProxy inner) : IWebProxy
    {
        public static readonly LoopbackBypassingProxy Instance = new(HttpClient.DefaultProxy);

        public ICredentials? Credentials
        {
            get => inner.Credentials;
            set => inner.Credentials = value;
        }

        public Uri? GetProxy(Uri destination) => inner.GetProxy(destination);

        public bool IsBypassed(Uri host) => host.IsLoopback || inner.IsBypassed(host);
    }

    private static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        context.InitialRequestMessage.Options.TryGetValue(s_socketKey, out var holder);
        if (holder?.Socket is not null)
        {
            // The handler retries a request whose connection closed before any response, on new connections too. A
            // backend that hangs up on the handshake is refused once, as before, rather than hit again.
            throw new BackendConnectException("the backend closed the connection during the handshake") { Kind = "rejected" };
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            var endPoint = context.DnsEndPoint;
            await socket.ConnectAsync(IPAddress.TryParse(endPoint.Host, out var address) ? new IPEndPoint(address, endPoint.Port) : endPoint, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        // The leg aborts through the socket (a pending read ends at once), whatever streams wrap it.
        holder?.Socket = socket;
        var network = new SocketStream(socket);

        // The request's own socket (through a proxy the callback opens the proxy's, for a CONNECT request without the
        // holder), in plain text: after the 101 the leg can read it without the handler (see DetachableStream).
        if (holder is not null && context.InitialRequestMessage.RequestUri?.Scheme == "ws")
        {
            return holder.Detachable = new DetachableStream(network);
        }

        return network;
    }

    private static HttpRequestMessage BuildRequest(BackendConnectRequest request, string key, SocketHolder holder)
    {
        // ws and wss stay as they are: SocketsHttpHandler knows them, and sends a ws:// request through a proxy's
        // CONNECT tunnel rather than as a proxied GET that few proxies would upgrade.
        var message = new HttpRequestMessage(HttpMethod.Get, request.Uri)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        message.Options.Set(s_socketKey, holder);
        var headers = message.Headers;
        headers.TryAddWithoutValidation("Upgrade", "websocket");
        headers.TryAddWithoutValidation("Connection", "Upgrade");
        headers.TryAddWithoutValidation("Sec-WebSocket-Key", key);
        headers.TryAddWithoutValidation("Sec-WebSocket-Version", "13");
        if (request.SubProtocols.Count > 0)
        {
            headers.TryAddWithoutValidation("Sec-WebSocket-Protocol", string.Join(", ", request.SubProtocols));
        }

        if (request.OfferDeflate)
        {
            headers.TryAddWithoutValidation("Sec-WebSocket-Extensions", DeflateNegotiation.ClientOffer);
        }

        foreach (var (name, value) in request.Headers)
        {
            // Kestrel already refuses CR and LF in request headers; this guards values that came from elsewhere.
            if (name.AsSpan().IndexOfAny('\r', '\n') >= 0 || value.AsSpan().IndexOfAny('\r', '\n') >= 0)
            {
                throw new BackendConnectException($"header '{name}' contains a line break") { Kind = "invalid", BlamesBackend = false };
            }

            if (!headers.TryAddWithoutValidation(name, value))
            {
                throw new BackendConnectException($"header '{name}' cannot be sent on a request") { Kind = "invalid", BlamesBackend = false };
            }
        }

        return message;
    }

    /// <summary>
    /// Reads what the handler buffered past the 101 from its content stream, whose connection no longer reads the
    /// socket (<see cref="DetachableStream"/>): the handler hands out its buffered bytes, then reads the detached
    /// stream, gets 0, and disposes its connection, which disposes the detached stream and so nothing.
    /// </summary>
    private static async ValueTask<byte[]> ReadBufferedAsync(Stream content, CancellationToken cancellationToken)
    {
        var buffer = new byte[4096];
        var total = 0;
        while (true)
        {
            if (total == buffer.Length)
            {
                Array.Resize(ref buffer, buffer.Length * 2);
            }

            var read = await content.ReadAsync(buffer.AsMemory(total), cancellationToken);
            if (read == 0)
            {
                return total == 0 ? [] : buffer[..total];
            }

            total += read;
        }
    }

    private static (string? SubProtocol, WebSocketDeflateOptions? Deflate) Check(HttpResponseMessage response, BackendConnectRequest request, string key)
    {
        var headers = response.Headers;
        if (!TryGet(headers, "Upgrade", out var upgrade) || !ServerHandshake.HasToken(upgrade, "websocket")
            || !TryGet(headers, "Connection", out var connection) || !ServerHandshake.HasToken(connection, "upgrade"))
        {
            throw new BackendConnectException("the backend's 101 response lacks Upgrade: websocket or Connection: Upgrade") { Kind = "invalid" };
        }

        if (!TryGet(headers, "Sec-WebSocket-Accept", out var accept) || accept != ServerHandshake.ComputeAccept(key))
        {
            throw new BackendConnectException("the backend's Sec-WebSocket-Accept does not match the key") { Kind = "invalid" };
        }

        TryGet(headers, "Sec-WebSocket-Protocol", out var subProtocol);
        if (!string.IsNullOrEmpty(subProtocol) && !request.SubProtocols.Contains(subProtocol, StringComparer.Ordinal))
        {
            throw new BackendConnectException($"the backend chose subprotocol '{subProtocol}', which the client did not offer") { Kind = "invalid" };
        }

        WebSocketDeflateOptions? deflate = null;
        if (TryGet(headers, "Sec-WebSocket-Extensions", out var extensions) && !string.IsNullOrWhiteSpace(extensions))
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

        return (string.IsNullOrEmpty(subProtocol) ? null : subProtocol, deflate);
    }

    private static bool TryGet(HttpResponseHeaders headers, string name, out string value)
    {
        if (headers.NonValidated.TryGetValues(name, out var values))
        {
            value = values.Count == 1 ? values.ToString() : string.Join(", ", values);
            return true;
        }

        value = string.Empty;
        return false;
    }

    private static BackendConnectException Describe(Exception ex, BackendConnectRequest request, bool callerCancelled)
    {
        if (ex is OperationCanceledException && !callerCancelled)
        {
            return new BackendConnectException($"no handshake within {request.Timeout.TotalMilliseconds:0} ms", ex) { Kind = "timeout" };
        }

        for (var inner = ex; inner is not null; inner = inner.InnerException)
        {
            switch (inner)
            {
                case BackendConnectException own:
                    return own;
                case SocketException { SocketErrorCode: SocketError.ConnectionRefused }:
                    return new BackendConnectException("connection refused", ex) { Kind = "refused" };
                case SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.TryAgain or SocketError.NoData }:
                    return new BackendConnectException($"host '{request.Uri.Host}' not found", ex) { Kind = "dns" };
                case System.Security.Authentication.AuthenticationException:
                    return new BackendConnectException($"TLS handshake failed: {inner.Message}", ex) { Kind = "tls" };
            }
        }

        return ex is HttpRequestException { HttpRequestError: var error }
            ? error switch
            {
                HttpRequestError.NameResolutionError => new BackendConnectException($"host '{request.Uri.Host}' not found", ex) { Kind = "dns" },
                HttpRequestError.SecureConnectionError => new BackendConnectException($"TLS handshake failed: {ex.Message}", ex) { Kind = "tls" },
                HttpRequestError.ResponseEnded => new BackendConnectException("the backend closed the connection during the handshake", ex) { Kind = "rejected" },
                HttpRequestError.InvalidResponse or HttpRequestError.ConfigurationLimitExceeded =>
                    new BackendConnectException($"the backend's handshake response is invalid: {ex.Message}", ex) { Kind = "invalid" },
                _ => new BackendConnectException(ex.Message, ex),
            }
            : new BackendConnectException(ex.Message, ex);
    }

    private sealed class SocketHolder
    {
        public Socket? Socket { get; set; }

        public DetachableStream? Detachable { get; set; }
    }

    /// <summary>
    /// The handler's view of a direct ws:// connection's socket, which the leg takes back after the 101. Reading the
    /// backend through the handler's upgraded stream keeps its HttpConnection alive for the whole connection (two 4 KiB
    /// buffers, the request and response objects: about 11 KiB), and that stream answers a zero-byte read at once, so
    /// FrameReader could not give its own buffer back while the backend is quiet. Once detached, the handler's reads
    /// get 0 (the end of its stream) and its disposal leaves the socket open.
    /// </summary>
    private sealed class DetachableStream(SocketStream inner) : Stream
    {
        private volatile bool _detached;

        public SocketStream Inner => inner;

        public void Detach() => _detached = true;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer) => _detached ? 0 : inner.Read(buffer);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            _detached ? ValueTask.FromResult(0) : inner.ReadAsync(buffer, cancellationToken);

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            ObjectDisposedException.ThrowIf(_detached, this);
            inner.Write(buffer);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            _detached ? ValueTask.FromException(new ObjectDisposedException(nameof(DetachableStream))) : inner.WriteAsync(buffer, cancellationToken);

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_detached)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
