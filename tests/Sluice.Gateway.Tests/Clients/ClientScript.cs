using System.Collections.Concurrent;
using System.Diagnostics;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Clients;

/// <summary>
/// A node script in tests/interop (client.mjs, browser.mjs) that drives the JavaScript client, read line by line so
/// that a test can act between its steps (restart the gateway when it says SUBSCRIBED).
/// </summary>
internal sealed class ClientScript : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly Task<string> _error;

    private ClientScript(Process process)
    {
        _process = process;
        _error = process.StandardError.ReadToEndAsync();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                _lines.Enqueue(e.Data);
            }
        };
        process.BeginOutputReadLine();
    }

    public static ClientScript Start(string script, params string[] arguments)
    {
        var info = new ProcessStartInfo("node") { WorkingDirectory = ExternalPeer.InteropDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(script);
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        return new ClientScript(Process.Start(info)!);
    }

    /// <summary>Runs a script to its end and returns its last line ("OK ...", "SKIP ...", "FAIL ...").</summary>
    public static async Task<string> RunAsync(string script, params string[] arguments)
    {
        await using var run = Start(script, arguments);
        return await run.ResultAsync();
    }

    public async Task WaitForLineAsync(string line, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!_lines.Contains(line))
        {
            if (_lines.Any(l => l.StartsWith("FAIL", StringComparison.Ordinal)) || _process.HasExited || DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"The script did not print '{line}': {string.Join(" | ", _lines)}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Waits (at most 3 minutes) for the script to end; its last line, or the exit code and stderr when it failed.</summary>
    public async Task<string> ResultAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await _process.WaitForExitAsync(timeout.Token);
        _process.WaitForExit(); // drains the asynchronous output readers
        var last = _lines.LastOrDefault()?.Trim() ?? string.Empty;
        return _process.ExitCode == 0 ? last : $"exit {_process.ExitCode}: {last} {await _error}";
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
