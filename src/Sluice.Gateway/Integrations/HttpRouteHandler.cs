using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Polly.Timeout;
using Sluice.Policies;
using Sluice.Proxy;

namespace Sluice.Gateway.Integrations;

/// <summary>The <c>http</c> handler's settings, validated: <c>url</c>, <c>timeoutMs</c>, <c>maxConcurrentRequests</c>.</summary>
internal sealed record HttpRouteSettings(Uri Url, int TimeoutMs, int MaxConcurrentRequests);

/// <summary>
/// The <c>http</c> handler: a route with no WebSocket backend, whose messages are POSTed to an HTTP service. The
/// engine's pump awaits the handler before it reads the connection's next message, so a connection's requests go
/// one at a time, in order, and a slow service slows only its own connections' reading (backpressure to the
/// client). Across connections, requests run at once up to the route's <c>maxConcurrentRequests</c>; a message
/// waits for a place within its own <c>timeoutMs</c>. A 2xx answer's body, when not empty, is the reply and runs
/// through the outbound policies; every failure is an error frame, with the details in the log.
/// </summary>
// A SemaphoreSlim needs disposing only once its AvailableWaitHandle was asked for, which this one never is; the
// handler lives as long as its configuration, and a reload may leave requests of the old one still in flight.
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "See above: nothing to dispose.")]
internal sealed partial class HttpRouteHandler : IMessageHandler
{
    public const string TypeName = "http";

    private static readonly MediaTypeHeaderValue s_json = new("application/json"); // always UTF-8 (RFC 8259): no charset
    private static readonly MediaTypeHeaderValue s_text = new("text/plain") { CharSet = "utf-8" };
    private static readonly MediaTypeHeaderValue s_binary = new("application/octet-stream");

    private readonly HttpRouteSettings _settings;
    private readonly int _maxMessageBytes;
    private readonly IHttpClientFactory _clients;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _inFlight;
    private readonly TimeSpan _timeout;

    public HttpRouteHandler(HttpRouteSettings settings, int maxMessageBytes, IHttpClientFactory clients, ILoggerFactory loggerFactory)
    {
        _settings = settings;
        _maxMessageBytes = maxMessageBytes;
        _clients = clients;
        _logger = loggerFactory.CreateLogger("Sluice.Gateway.HttpRoute");
        _inFlight = new SemaphoreSlim(settings.MaxConcurrentRequests, settings.MaxConcurrentRequests);
        _timeout = TimeSpan.FromMilliseconds(settings.TimeoutMs);
    }

    public async ValueTask<object?> HandleAsync(MessageContext context)
    {
        var connection = context.Connection;
        var route = connection.RoutePattern;
        using var timeout = new CancellationTokenSource(_timeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, connection.Closed);
        try
        {
            await _inFlight.WaitAsync(linked.Token);
        }
        catch (OperationCanceledException) when (!connection.Closed.IsCancellationRequested)
        {
            return Fail(connection, "busy", $"no place among the route's {_settings.MaxConcurrentRequests} concurrent requests within {_settings.TimeoutMs} ms", "the service is busy");
        }

        try
        {
            return await SendAsync(context, linked.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutRejectedException && !connection.Closed.IsCancellationRequested)
        {
            return Fail(connection, "timeout", $"no answer within {_settings.TimeoutMs} ms", "the service did not answer in time");
        }
        catch (HttpRequestException ex)
        {
            return Fail(connection, "unreachable", ex.Message, "the service could not be reached");
        }
        finally
        {
            _inFlight.Release();
        }
    }

    private async ValueTask<object?> SendAsync(MessageContext context, CancellationToken cancellationToken)
    {
        var connection = context.Connection;
        var message = context.Message;
        // The payload is a view of the connection's read buffer, valid until the handler returns: the request is sent
        // (and any retry of a refused connection made) before then, so it is not copied.
        var content = new ReadOnlyMemoryContent(message.Payload);
        content.Headers.ContentType = message.IsBinary ? s_binary : context.IsJson ? s_json : s_text;
        using var request = new HttpRequestMessage(HttpMethod.Post, _settings.Url) { Content = content }.WithTimeout(_timeout);
        request.Headers.TryAddWithoutValidation("X-Sluice-Connection", connection.Id);
        request.Headers.TryAddWithoutValidation("X-Sluice-Route", connection.RoutePattern);
        if (connection.Subject is { } subject)
        {
            request.Headers.TryAddWithoutValidation("X-Sluice-Subject", HeaderValue(subject));
        }

        using var response = await _clients.CreateClient(HttpCallouts.ClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        var status = (int)response.StatusCode;
        if (status is < 200 or > 299)
        {
            return Fail(connection, "status", $"the service answered {status}", $"the service answered {status}");
        }

        var body = await ReadBoundedAsync(response.Content, _maxMessageBytes, cancellationToken);
        if (body is null)
        {
            return Fail(connection, "too_large", $"the answer is over limits.maxMessageBytes ({_maxMessageBytes} bytes)", "the service's answer is too large");
        }

        var binary = response.Content.Headers.ContentType?.MediaType == "application/octet-stream";
        if (!binary && !System.Text.Unicode.Utf8.IsValid(body))
        {
            // A text frame must be UTF-8: the client gets an error frame rather than a broken frame.
            return Fail(connection, "not_utf8", "the answer is text but not UTF-8 (answer application/octet-stream for binary)", "the service's answer is not UTF-8 text");
        }

        IntegrationMetrics.HttpRouteRequest(connection.RoutePattern, "ok");
        return body.Length == 0 ? null : binary ? WebSocketMessage.FromBinary(body) : WebSocketMessage.FromText(body);
    }

    private WebSocketMessage Fail(WebSocketConnection connection, string outcome, string reason, string clientMessage)
    {
        IntegrationMetrics.HttpRouteRequest(connection.RoutePattern, outcome);
        Log.RequestFailed(_logger, connection.Id, connection.RoutePattern, WebSocketProxyUrls.WithoutQuery(_settings.Url), reason);
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject("error");
            json.WriteString("policy", TypeName);
            json.WriteNumber("status", StatusCodes.Status502BadGateway);
            json.WriteString("message", clientMessage);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        return WebSocketMessage.FromText(buffer.ToArray());
    }

    /// <summary>A header value as HTTP allows it: printable ASCII as is, anything else percent-encoded.</summary>
    internal static string HeaderValue(string value) =>
        value.All(c => c is >= ' ' and < (char)127) ? value : Uri.EscapeDataString(value);

    /// <summary>Reads a body of at most <paramref name="maxBytes"/>; null when it is longer (it is not read further).</summary>
    internal static async Task<byte[]?> ReadBoundedAsync(HttpContent content, int maxBytes, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength is { } length && length > maxBytes)
        {
            return null;
        }

        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[(int)Math.Min(maxBytes + 1L, (content.Headers.ContentLength ?? 4096) + 1)];
        var read = 0;
        while (true)
        {
            if (read == buffer.Length)
            {
                Array.Resize(ref buffer, (int)Math.Min(maxBytes + 1L, buffer.Length * 2L));
            }

            var n = await stream.ReadAsync(buffer.AsMemory(read), cancellationToken);
            if (n == 0)
            {
                return buffer[..read];
            }

            read += n;
            if (read > maxBytes)
            {
                return null;
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(850, LogLevel.Warning, "Connection {ConnectionId} ({Route}): the HTTP route's request to {Url} failed, the client gets an error frame: {Reason}")]
        public static partial void RequestFailed(ILogger logger, string connectionId, string route, string url, string reason);
    }
}
