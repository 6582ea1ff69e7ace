using System.Diagnostics;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.PubSub;

/// <summary>The gateway process's pubsub permissions and namespaces, driven by python clients (python3-websockets).</summary>
public class PubSubPermissionTests
{
    private const string JwtSecret = "a-test-secret-of-at-least-32-bytes!!";

    [Fact]
    public async Task EachPrincipalKind_IsDeniedAndAllowed_AsTheFirstMatchingEntrySays()
    {
        using var folder = new ConfigFolder();
        // Three routes, one namespace: the same topics whoever authenticates how.
        const string options = """
            { "namespace": "app", "permissions": [
                { "topics": "public.*", "subscribe": ["*"], "publish": ["subject:alice", "claim:role=admin"] },
                { "topics": "user.${subject}", "subscribe": ["authenticated"], "publish": ["authenticated"] },
                { "topics": "user.*", "subscribe": [], "publish": ["subject:alice"] } ] }
            """;
        var config = folder.Write($$"""
            {
              "policies": {
                "keys": { "type": "api-key", "options": { "header": "X-Api-Key", "query": "apikey", "keys": [ { "key": "k-bob", "subject": "bob" }, { "key": "k-alice", "subject": "alice" } ] } },
                "jwt": { "type": "jwt", "options": { "signingKey": "{{JwtSecret}}" } }
              },
              "routes": [
                { "path": "/anon", "handler": { "type": "pubsub", "options": {{options}} } },
                { "path": "/key", "upgrade": ["keys"], "handler": { "type": "pubsub", "options": {{options}} } },
                { "path": "/jwt", "upgrade": ["jwt"], "handler": { "type": "pubsub", "options": {{options}} } },
                { "path": "/elsewhere", "handler": { "type": "pubsub" } }
              ]
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(config);

        var output = await RunPythonAsync("pubsub_permissions.py", gateway.Ws(string.Empty).ToString().TrimEnd('/'), JwtSecret);

        Assert.Equal(
            [
                "anon subscribe public.news subscribed",
                "anon publish public.news 403",
                "anon subscribe user.bob 403",
                "anon subscribe other 403",
                "bob subscribe user.bob subscribed",
                "bob subscribe user.alice 403",
                "bob publish public.news 403",
                "alice publish public.news published",
                "dave publish public.news 403",
                "carol publish public.news published",
                "alice publish user.bob published",
                "bob publish user.bob published",
                "anon received alice publish public.news; carol publish public.news",
                "bob received alice publish user.bob",
            ],
            output);
    }

    [Fact]
    public async Task Namespaces_IsolateRoutes_AndTheAdminPublishesIntoOne()
    {
        using var folder = new ConfigFolder();
        var config = folder.Write("""
            {
              "admin": { "apiKey": "env:SLUICE_PUBSUB_ADMIN_KEY" },
              "routes": [
                { "path": "/a", "handler": { "type": "pubsub", "options": { "namespace": "a" } } },
                { "path": "/b", "handler": { "type": "pubsub", "options": { "namespace": "b" } } },
                { "path": "/none", "handler": { "type": "pubsub" } }
              ]
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(config, new Dictionary<string, string> { ["SLUICE_PUBSUB_ADMIN_KEY"] = "pubsub-admin-key-0123456789" });
        using var onA = await WebSocketClient.ConnectAsync(gateway.Ws("/a"));
        using var onB = await WebSocketClient.ConnectAsync(gateway.Ws("/b"));
        using var onNone = await WebSocketClient.ConnectAsync(gateway.Ws("/none"));
        foreach (var client in new[] { onA, onB, onNone })
        {
            await client.SendTextAsync("""{"op":"subscribe","topic":"T"}""");
            Assert.Equal("""{"op":"subscribed","topic":"T"}""", await client.ReceiveTextAsync());
        }

        using var admin = new HttpClient();
        admin.DefaultRequestHeaders.Authorization = new("Bearer", "pubsub-admin-key-0123456789");
        using (var response = await admin.PostAsync(gateway.Http("/_sluice/topics/T?namespace=b"), new StringContent("\"to b\"")))
        {
            response.EnsureSuccessStatusCode();
            Assert.Contains("\"subscribers\":1", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var response = await admin.PostAsync(gateway.Http("/_sluice/topics/T?namespace=zzz"), new StringContent("1")))
        {
            Assert.Equal(System.Net.HttpStatusCode.NotFound, response.StatusCode);
        }

        using (var response = await admin.PostAsync(gateway.Http("/_sluice/topics/T"), new StringContent("\"to none\"")))
        {
            response.EnsureSuccessStatusCode();
        }

        Assert.Equal("""{"op":"message","topic":"T","data":"to b"}""", await onB.ReceiveTextAsync());
        Assert.Equal("""{"op":"message","topic":"T","data":"to none"}""", await onNone.ReceiveTextAsync());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => onA.ReceiveTextAsync(TimeSpan.FromMilliseconds(500)));
    }

    private static async Task<string[]> RunPythonAsync(string script, params string[] arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "PubSub", script));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var error = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        Assert.True(process.ExitCode == 0, $"python exited {process.ExitCode}: {await error}");
        return (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }
}
