using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;

namespace Sluice.Gateway.Tests.Tls;

/// <summary>
/// The admin pages over https: a <c>Secure</c> cookie, <c>frame-ancestors 'none'</c> on every admin page, and failed
/// attempts at the key throttled per client address.
/// </summary>
public class TlsAdminTests
{
    private const string AdminKey = "tls-admin-key-0123456789";

    private const string Config = """
        {
          "tls": { "certificate": "certs/gateway.pem", "key": "certs/gateway.key" },
          "admin": { "apiKey": "env:SLUICE_TLS_ADMIN_KEY" },
          "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ]
        }
        """;

    private static Dictionary<string, string> Environment => new() { ["SLUICE_TLS_ADMIN_KEY"] = AdminKey };

    [Fact]
    public async Task Cookie_IsSecureOverHttps_NotOverHttp_AndEveryAdminPageForbidsFraming()
    {
        await using var tls = await TlsGateway.StartAsync(Config, alsoHttp: true, Environment);
        using var https = new HttpClient(tls.Handler()) { BaseAddress = tls.Https("/_sluice/") };
        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = new Uri($"http://127.0.0.1:{tls.HttpPort}/_sluice/") };

        using var secure = await https.PostAsync("login", new FormUrlEncodedContent([new("key", AdminKey)]));
        Assert.Equal(HttpStatusCode.Redirect, secure.StatusCode);
        var secureCookie = secure.Headers.GetValues("Set-Cookie").Single();
        Assert.Contains("; secure", secureCookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("; httponly", secureCookie, StringComparison.OrdinalIgnoreCase);

        using var plain = await http.PostAsync("login", new FormUrlEncodedContent([new("key", AdminKey)]));
        Assert.Equal(HttpStatusCode.Redirect, plain.StatusCode);
        Assert.DoesNotContain("secure", plain.Headers.GetValues("Set-Cookie").Single(), StringComparison.OrdinalIgnoreCase);

        var cookie = secureCookie.Split(';')[0];
        foreach (var (path, withCookie, status) in new[] { ("", false, HttpStatusCode.OK), ("", true, HttpStatusCode.OK), ("connections", false, HttpStatusCode.Unauthorized), ("dashboard.js", true, HttpStatusCode.OK) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            if (withCookie)
            {
                request.Headers.Add("Cookie", cookie);
            }

            using var response = await https.SendAsync(request);
            Assert.Equal(status, response.StatusCode);
            Assert.Equal("frame-ancestors 'none'", string.Join(",", response.Headers.GetValues("Content-Security-Policy")));
            Assert.Equal("DENY", string.Join(",", response.Headers.GetValues("X-Frame-Options")));
            if (path == "" && !withCookie)
            {
                Assert.Contains("name=\"key\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task FailedLogins_AreThrottledPerAddress_With429AndRetryAfter_ThenAllowedAgain()
    {
        await using var tls = await TlsGateway.StartAsync(Config, environment: Environment);
        using var https = new HttpClient(tls.Handler()) { BaseAddress = tls.Https("/_sluice/") };

        for (var i = 0; i < 5; i++)
        {
            using var wrong = await https.PostAsync("login", new FormUrlEncodedContent([new("key", "wrong-key-" + i)]));
            Assert.Equal(HttpStatusCode.Redirect, wrong.StatusCode);
            Assert.EndsWith("?failed=1", wrong.Headers.Location!.ToString(), StringComparison.Ordinal);
        }

        using var throttled = await https.PostAsync("login", new FormUrlEncodedContent([new("key", AdminKey)]));
        Assert.Equal(HttpStatusCode.TooManyRequests, throttled.StatusCode);
        var retryAfter = throttled.Headers.RetryAfter!.Delta!.Value;
        Assert.InRange(retryAfter, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10));
        Assert.False(throttled.Headers.Contains("Set-Cookie"));

        // A key header is an attempt too, and is not checked while throttled (a right one would otherwise show).
        using (var request = new HttpRequestMessage(HttpMethod.Get, "connections"))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
            using var response = await https.SendAsync(request);
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        }

        // Visiting the login page presents no key and is not refused.
        using (var page = await https.GetAsync(""))
        {
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        }

        // One attempt comes back every 10 seconds.
        await Task.Delay(retryAfter + TimeSpan.FromMilliseconds(500));
        using var allowed = await https.PostAsync("login", new FormUrlEncodedContent([new("key", AdminKey)]));
        Assert.Equal(HttpStatusCode.Redirect, allowed.StatusCode);
        Assert.Contains("sluice-admin=", allowed.Headers.GetValues("Set-Cookie").Single(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WrongKeyHeaders_CountAsFailedAttempts()
    {
        await using var tls = await TlsGateway.StartAsync(Config, environment: Environment);
        using var https = new HttpClient(tls.Handler()) { BaseAddress = tls.Https("/_sluice/") };

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "connections");
            request.Headers.Add("X-Api-Key", "wrong-key-" + i);
            using var response = await https.SendAsync(request);
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([.. Enumerable.Repeat(HttpStatusCode.Unauthorized, 5), HttpStatusCode.TooManyRequests], statuses);
    }
}
