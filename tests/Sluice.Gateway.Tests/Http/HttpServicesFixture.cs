using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Http;

/// <summary>
/// A gateway process in front of HTTP services started for a test class: a subclass starts its services with
/// <see cref="Add"/> and the gateway with <see cref="StartGatewayAsync"/>; everything is stopped at the end.
/// </summary>
public abstract class HttpServicesFixture : IAsyncLifetime
{
    private readonly List<HttpService> _all = [];
    private readonly ConfigFolder _folder = new();

    /// <summary>A raw-socket service answering 100 MB, to see how much of it the gateway reads.</summary>
    public HugeAnswerService Huge { get; } = new();

    public GatewayProcess Gateway { get; private set; } = null!;

    public abstract Task InitializeAsync();

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        foreach (var service in _all)
        {
            await service.DisposeAsync();
        }

        _folder.Dispose();
        Huge.Dispose();
    }

    protected async Task StartGatewayAsync(string config) => Gateway = await GatewayProcess.StartAsync(_folder.Write(config));

    protected async Task<HttpService> Add(Task<HttpService> starting)
    {
        var service = await starting;
        _all.Add(service);
        return service;
    }
}
