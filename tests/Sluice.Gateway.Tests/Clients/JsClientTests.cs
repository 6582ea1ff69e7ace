using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Clients;

/// <summary>
/// The JavaScript client (clients/js) in node against the real gateway, through tests/interop/client.mjs (which uses
/// the `ws` package as its WebSocket, since node 20 has none built in).
/// </summary>
public sealed class JsClientTests : IDisposable
{
    private const string Plain = """
        { "routes": [ { "path": "/topics", "handler": { "type": "pubsub" } } ] }
        """;

    // History and presence (the second release's pubsub options); api-key by query parameter for the subjects.
    private const string WithHistory = """
        {
          "routes": [ { "path": "/topics", "upgrade": ["keys"], "handler": { "type": "pubsub", "options": {
              "history": { "size": 100, "ttlSeconds": 600 }, "presence": { "joinLeave": true } } } } ],
          "policies": { "keys": { "type": "api-key", "options": { "query": "key", "keys": [
              { "key": "env:SLUICE_ALICE_KEY", "subject": "alice" }, { "key": "env:SLUICE_BOB_KEY", "subject": "bob" } ] } } }
        }
        """;

    private static readonly Dictionary<string, string> Keys = new() { ["SLUICE_ALICE_KEY"] = "k-alice", ["SLUICE_BOB_KEY"] = "k-bob" };

    private readonly ConfigFolder _folder = new();

    [Fact]
    public async Task SubscribePublishReceive_InOrder_RefusalsReject_Unsubscribe()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain));

        Assert.Equal("OK roundtrip 201", await ClientScript.RunAsync("client.mjs", "roundtrip", Base(gateway)));
    }

    [Fact]
    public async Task TheJsChatSample_ALineTypedInOneChat_IsPrintedByAnother()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain));

        Assert.Equal("OK sample", await ClientScript.RunAsync("client.mjs", "sample", Base(gateway)));
    }

    [Fact]
    public async Task GatewayRestart_TheClientReconnects_AndResubscribesEveryTopic()
    {
        var config = _folder.Write(Plain);
        var gateway = await GatewayProcess.StartAsync(config);
        await using var script = ClientScript.Start("client.mjs", "restart", Base(gateway));
        try
        {
            await script.WaitForLineAsync("SUBSCRIBED", TimeSpan.FromSeconds(60));
            Assert.Equal(0, await gateway.StopAsync());
            await gateway.DisposeAsync();
            gateway = await GatewayProcess.StartAsync(config, urls: $"http://127.0.0.1:{gateway.Port}");

            Assert.StartsWith("OK restart", await script.ResultAsync(), StringComparison.Ordinal);
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task NothingListening_TheClientRetries_AndConnectsWhenTheGatewayComes()
    {
        var port = GatewayProcess.FreePort();
        await using var script = ClientScript.Start("client.mjs", "vanish", $"ws://127.0.0.1:{port}");
        await script.WaitForLineAsync("REFUSED", TimeSpan.FromSeconds(60));
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain), urls: $"http://127.0.0.1:{port}");

        Assert.StartsWith("OK vanish", await script.ResultAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1008, "final")]
    [InlineData(4001, "final")]
    [InlineData(1003, "final")]
    [InlineData(1001, "reconnected room")]
    [InlineData(1011, "reconnected room")]
    [InlineData(1012, "reconnected room")]
    [InlineData(1013, "reconnected room")]
    public async Task ClosedByTheGateway_ReconnectsOnlyWhereItMakesSense(int code, string outcome)
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain));

        var result = await ClientScript.RunAsync("client.mjs", "close", Base(gateway), Http(gateway), code.ToString(System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal($"OK close {code} {outcome}", result);
    }

    [Fact]
    public async Task GarbageFrames_AreErrorEvents_AndTheConnectionGoesOn()
    {
        Assert.StartsWith("OK garbage", await ClientScript.RunAsync("client.mjs", "garbage"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AwayWhileMessagesArePublished_RecoversExactlyThoseInOrder()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(WithHistory), Keys);

        Assert.Equal("OK recover 6 recovered", await ClientScript.RunAsync("client.mjs", "recover", Base(gateway), Http(gateway)));
    }

    [Fact]
    public async Task Presence_CountsSubjects_AndJoinLeaveArrive()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(WithHistory), Keys);

        Assert.Equal("OK presence join bob,leave bob", await ClientScript.RunAsync("client.mjs", "presence", Base(gateway)));
    }

    public void Dispose() => _folder.Dispose();

    private static string Base(GatewayProcess gateway) => gateway.Ws("/").ToString().TrimEnd('/');

    private static string Http(GatewayProcess gateway) => gateway.Http("/").ToString().TrimEnd('/');
}
