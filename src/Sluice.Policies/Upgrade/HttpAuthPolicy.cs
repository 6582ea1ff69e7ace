using System.Collections.Concurrent;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Polly.Timeout;
using Sluice.Proxy;

namespace Sluice.Policies;

/// <summary>Options of <see cref="HttpAuthPolicy"/> (<c>http-auth</c>).</summary>
public sealed class HttpAuthPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets the URL of the service that decides (http or https).</summary>
    public string Url { get; set; } = string.Empty;

    /// <summary>Gets or sets the request headers sent to the service (those present); they are also what the cache keys on.</summary>
    public List<string> ForwardHeaders { get; set; } = [];

    /// <summary>Gets or sets how long the service may take, in all, before the client gets 502. Default: 2000 ms.</summary>
    public int TimeoutMs { get; set; } = 2000;

    /// <summary>Gets or sets how long an answer (allowed, 401 or 403) is reused for the same credentials. Default: 0, no cache.</summary>
    public double CacheSeconds { get; set; }

    /// <summary>Gets or sets the most answers the cache holds. Default: 10000.</summary>
    public int MaxCacheEntries { get; set; } = 10_000;

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (!Uri.TryCreate(Url, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            yield return new("url", $"'{Url}' is not an absolute http:// or https:// URL");
        }

        for (var i = 0; i < ForwardHeaders.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(ForwardHeaders[i]) || ForwardHeaders[i].Any(c => c <= ' ' || c >= 127 || c == ':'))
            {
                yield return new($"forwardHeaders[{i}]", $"'{ForwardHeaders[i]}' is not a header name");
            }
        }

        if (TimeoutMs is < 1 or > 600_000)
        {
            yield return new("timeoutMs", "must be between 1 and 600000");
        }

        if (CacheSeconds is < 0 or > 86_400 || double.IsNaN(CacheSeconds))
        {
            yield return new("cacheSeconds", "must be between 0 and 86400");
        }

        if (MaxCacheEntries < 1)
        {
            yield return new("maxCacheEntries", "must be at least 1");
        }
    }
}

/// <summary>
/// <c>http-auth</c>: asks an HTTP service whether to allow the upgrade, as nginx's <c>auth_request</c> does. The
/// policy POSTs <c>{"path","query","headers","ip"}</c> (only the forwarded headers) as JSON; a 2xx answer allows the
/// upgrade, and its optional body <c>{"subject": "...", "claims": {...}}</c> sets the connection's subject and
/// claims; 401 and 403 are passed to the client; anything else (another status, a redirect, a body that is not such
/// JSON or is over 64 KiB, a timeout, a service that is down) is 502, with the reason in the log only.
/// </summary>
public sealed partial class HttpAuthPolicy : IUpgradePolicy
{
    /// <summary>The largest answer body read; a longer one is a 502 and is not read further.</summary>
    internal const int MaxBodyBytes = 64 * 1024;

    private static readonly MediaTypeHeaderValue s_json = new("application/json") { CharSet = "utf-8" };

    private readonly IHttpClientFactory _clients;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Uri _url;
    private readonly string[] _forwardHeaders;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _cacheFor;
    private readonly int _maxCacheEntries;
    private readonly ConcurrentDictionary<string, CachedDecision> _cache = new(StringComparer.Ordinal);

    /// <summary>Creates the policy.</summary>
    /// <param name="options">The options.</param>
    /// <param name="clients">The factory of the client registered by <see cref="HttpCallouts.AddSluiceHttpCallouts"/>.</param>
    /// <param name="loggerFactory">Where the reasons of 502 answers are logged.</param>
    /// <param name="name">The policy's name, in logs and metrics.</param>
    /// <param name="timeProvider">The clock of the cache. Default: <see cref="TimeProvider.System"/>.</param>
    public HttpAuthPolicy(HttpAuthPolicyOptions options, IHttpClientFactory clients, ILoggerFactory loggerFactory, string name = "http-auth", TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(clients);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        PolicyValidation.ThrowIfInvalid(options, name);
        Name = name;
        _clients = clients;
        _logger = loggerFactory.CreateLogger("Sluice.Policies.HttpAuth");
        _time = timeProvider ?? TimeProvider.System;
        _url = new Uri(options.Url);
        _forwardHeaders = [.. options.ForwardHeaders.Distinct(StringComparer.OrdinalIgnoreCase)];
        _timeout = TimeSpan.FromMilliseconds(options.TimeoutMs);
        _cacheFor = TimeSpan.FromSeconds(options.CacheSeconds);
        _maxCacheEntries = options.MaxCacheEntries;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public async ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var request = context.HttpContext.Request;
        var key = _cacheFor > TimeSpan.Zero ? CacheKey(request) : null;
        Decision decision;
        if (key is not null && _cache.TryGetValue(key, out var cached) && cached.ExpiresAt > _time.GetUtcNow())
        {
            decision = cached.Decision;
            HttpAuthMetrics.Decided(Name, "cached");
        }
        else
        {
            decision = await AskAsync(context.HttpContext, context.HttpContext.RequestAborted);
            HttpAuthMetrics.Decided(Name, decision.Status switch { 200 => "allowed", 502 => "failed", _ => "refused" });
            if (key is not null && decision.Status != StatusCodes.Status502BadGateway)
            {
                Remember(key, decision);
            }
        }

        if (decision.Status != StatusCodes.Status200OK)
        {
            if (decision.WwwAuthenticate is { } challenge)
            {
                context.HttpContext.Response.Headers.WWWAuthenticate = challenge;
            }

            return UpgradeResult.Reject(decision.Status, decision.Status == StatusCodes.Status502BadGateway ? "the authorization service failed" : "refused by the authorization service");
        }

        if (decision.Subject is { } subject)
        {
            context.Subject = subject;
        }

        if (decision.Subject is not null || decision.Claims.Length > 0)
        {
            context.HttpContext.User = new ClaimsPrincipal(new ClaimsIdentity(decision.Claims, "HttpAuth", "sub", ClaimTypes.Role));
        }

        return UpgradeResult.Continue();
    }

    private async Task<Decision> AskAsync(HttpContext http, CancellationToken aborted)
    {
        using var timeout = new CancellationTokenSource(_timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, aborted);
        try
        {
            var content = new ByteArrayContent(RequestBody(http));
            content.Headers.ContentType = s_json;
            using var message = new HttpRequestMessage(HttpMethod.Post, _url) { Content = content }.WithTimeout(_timeout);
            using var response = await _clients.CreateClient(HttpCallouts.ClientName).SendAsync(message, HttpCompletionOption.ResponseHeadersRead, linked.Token);
            var status = (int)response.StatusCode;
            if (status is StatusCodes.Status401Unauthorized or StatusCodes.Status403Forbidden)
            {
                return new Decision(status, null, [], response.Headers.WwwAuthenticate.Count > 0 ? response.Headers.WwwAuthenticate.ToString() : null);
            }

            if (status is < 200 or > 299)
            {
                return Failed($"the service answered {status}{(status is >= 300 and < 400 ? " (redirects are not followed)" : string.Empty)}");
            }

            var body = await HttpCallouts.ReadBoundedAsync(response.Content, MaxBodyBytes, linked.Token);
            return body is null ? Failed($"the answer's body is over {MaxBodyBytes} bytes") : Parse(body);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutRejectedException && !aborted.IsCancellationRequested)
        {
            return Failed($"no answer within {_timeout.TotalMilliseconds} ms");
        }
        catch (HttpRequestException ex)
        {
            return Failed($"the request failed: {ex.Message}");
        }
        catch (OperationCanceledException)
        {
            // The client went away: nobody reads the answer.
            return new Decision(StatusCodes.Status502BadGateway, null, [], null);
        }
    }

    private Decision Failed(string reason)
    {
        Log.ServiceFailed(_logger, Name, WebSocketProxyUrls.WithoutQuery(_url), reason);
        return new Decision(StatusCodes.Status502BadGateway, null, [], null);
    }

    private Decision Parse(byte[] body)
    {
        if (body.Length == 0)
        {
            return new Decision(StatusCodes.Status200OK, null, [], null);
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return Failed("the answer's body is not JSON");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return Failed("the answer's body is not a JSON object");
            }

            string? subject = null;
            var claims = new List<Claim>();
            if (document.RootElement.TryGetProperty("subject", out var subjectElement) && subjectElement.ValueKind != JsonValueKind.Null)
            {
                if (subjectElement.ValueKind != JsonValueKind.String || subjectElement.GetString() is not { Length: > 0 } text)
                {
                    return Failed("the answer's subject is not a non-empty string");
                }

                subject = text;
                claims.Add(new Claim("sub", subject));
            }

            if (document.RootElement.TryGetProperty("claims", out var claimsElement) && claimsElement.ValueKind != JsonValueKind.Null)
            {
                if (claimsElement.ValueKind != JsonValueKind.Object)
                {
                    return Failed("the answer's claims is not a JSON object");
                }

                foreach (var property in claimsElement.EnumerateObject())
                {
                    // An array is one claim per element, as a JWT's multi-valued claims are; other values keep their
                    // JSON text (a number, true, an object).
                    if (property.Value.ValueKind == JsonValueKind.Array)
                    {
                        claims.AddRange(property.Value.EnumerateArray().Select(v => new Claim(property.Name, ClaimValue(v))));
                    }
                    else if (property.Name != "sub" || subject is null)
                    {
                        claims.Add(new Claim(property.Name, ClaimValue(property.Value)));
                    }
                }
            }

            return new Decision(StatusCodes.Status200OK, subject, [.. claims], null);
        }
    }

    private static string ClaimValue(JsonElement value) => value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();

    private byte[] RequestBody(HttpContext http)
    {
        var request = http.Request;
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("path", request.Path.Value);
            json.WriteStartObject("query");
            foreach (var (name, value) in request.Query)
            {
                json.WriteString(name, value.ToString());
            }

            json.WriteEndObject();
            json.WriteStartObject("headers");
            foreach (var name in _forwardHeaders)
            {
                if (request.Headers.TryGetValue(name, out var value))
                {
                    json.WriteString(name, value.ToString());
                }
            }

            json.WriteEndObject();
            json.WriteString("ip", http.Connection.RemoteIpAddress?.ToString());
            json.WriteEndObject();
        }

        return buffer.ToArray();
    }

    /// <summary>
    /// What identifies a request's credentials: the forwarded headers' values, with the path, query and client address
    /// (everything the service is sent, so it may answer differently per room, URL token or address), hashed so the
    /// cache holds no credential.
    /// </summary>
    private string CacheKey(HttpRequest request)
    {
        var text = new StringBuilder().Append(request.Path.Value).Append('\n').Append(request.QueryString.Value)
            .Append('\n').Append(request.HttpContext.Connection.RemoteIpAddress?.ToString());
        foreach (var name in _forwardHeaders)
        {
            text.Append('\n').Append(request.Headers[name].ToString());
        }

        return Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    private void Remember(string key, Decision decision)
    {
        var now = _time.GetUtcNow();
        if (_cache.Count >= _maxCacheEntries)
        {
            foreach (var (k, v) in _cache)
            {
                if (v.ExpiresAt <= now)
                {
                    _cache.TryRemove(k, out _);
                }
            }

            if (_cache.Count >= _maxCacheEntries)
            {
                // Full of live answers: this one is not kept; the next request asks the service again.
                return;
            }
        }

        _cache[key] = new CachedDecision(decision, now + _cacheFor);
    }

    private sealed record Decision(int Status, string? Subject, Claim[] Claims, string? WwwAuthenticate);

    private sealed record CachedDecision(Decision Decision, DateTimeOffset ExpiresAt);

    private static partial class Log
    {
        [LoggerMessage(EventId = 640, Level = LogLevel.Warning, Message = "{Policy}: the authorization service {Url} failed, the client gets 502: {Reason}")]
        public static partial void ServiceFailed(ILogger logger, string policy, string url, string reason);
    }
}
