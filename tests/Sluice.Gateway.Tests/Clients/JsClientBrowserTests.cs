using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Clients;

/// <summary>
/// The JavaScript client in Debian's headless Chromium, as the demo page uses it (served by the gateway as
/// /sluice-client.js), driven by tests/interop/browser.mjs.
/// </summary>
public sealed class JsClientBrowserTests
{
    [Fact]
    public async Task DemoTopicPanel_TwoTabs_OneSeesWhatTheOtherPublishes()
    {
        await using var gateway = await GatewayProcess.StartAsync(configPath: null);

        Assert.Equal("OK pubsub", await ClientScript.RunAsync("browser.mjs", "pubsub", Base(gateway)));
    }

    [Fact]
    public async Task GatewayRestart_ThePageReconnects_AndResubscribes()
    {
        var gateway = await GatewayProcess.StartAsync(configPath: null);
        await using var script = ClientScript.Start("browser.mjs", "client-restart", Base(gateway));
        try
        {
            await script.WaitForLineAsync("SUBSCRIBED", TimeSpan.FromSeconds(90));
            Assert.Equal(0, await gateway.StopAsync());
            await gateway.DisposeAsync();
            gateway = await GatewayProcess.StartAsync(configPath: null, urls: $"http://127.0.0.1:{gateway.Port}");

            Assert.Equal("OK client-restart reconnected", await script.ResultAsync());
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }

    private static string Base(GatewayProcess gateway) => gateway.Http("/").ToString().TrimEnd('/');
}
