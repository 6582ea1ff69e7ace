using System.Diagnostics;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Tls;

/// <summary>
/// The demo page in headless Chromium over https, on the self-signed certificate the demo makes for an https://
/// address (Chromium is told to accept it), chatting over wss:// (tests/interop/browser.mjs).
/// </summary>
public class TlsBrowserTests
{
    [Fact]
    public async Task DemoPage_OverHttps_ChatsOverWss()
    {
        var port = GatewayProcess.FreePort();
        await using var gateway = await GatewayProcess.StartAsync(configPath: null, urls: $"https://127.0.0.1:{port}");
        await gateway.WaitForOutputAsync($"demo page:   https://127.0.0.1:{port}/");
        await gateway.WaitForOutputAsync("a self-signed certificate made for this run");
        var screenshots = Directory.CreateTempSubdirectory("sluice-tls-browser-").FullName;
        try
        {
            var info = new ProcessStartInfo("node") { WorkingDirectory = ExternalPeer.InteropDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var argument in new[] { "browser.mjs", "demo", $"https://127.0.0.1:{port}", screenshots })
            {
                info.ArgumentList.Add(argument);
            }

            using var process = Process.Start(info)!;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var error = process.StandardError.ReadToEndAsync(timeout.Token);
            await process.WaitForExitAsync(timeout.Token);
            var last = (await output).Trim().Split('\n').Last();

            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {last} {await error}");
            Assert.Equal("OK demo over wss", last);
        }
        finally
        {
            Directory.Delete(screenshots, recursive: true);
        }
    }
}
