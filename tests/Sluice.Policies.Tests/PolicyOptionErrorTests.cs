namespace Sluice.Policies.Tests;

/// <summary>Options report their problems as (member, message) pairs, which a host places without parsing text.</summary>
public class PolicyOptionErrorTests
{
    [Fact]
    public void Validate_NamesTheMemberApartFromTheMessage()
    {
        var options = new ApiKeyPolicyOptions { Header = "X-Key", Keys = [new() { Key = "k", Subject = "a" }, new() { Key = "", Subject = "b" }] };

        var error = Assert.Single(options.Validate());

        Assert.Equal(new PolicyOptionError("keys[1].key", "must not be empty"), error);
        Assert.Equal("keys[1].key: must not be empty", error.ToString());
    }

    [Fact]
    public void Validate_AMessageThatHoldsAColon_IsNotSplitThere()
    {
        // The JWT library's own words may hold colons; the member is still only signingKey.
        var error = Assert.Single(new JwtPolicyOptions { SigningKey = "base64:not base64!" }.Validate());

        Assert.Equal("signingKey", error.Member);
        Assert.Equal("the base64: value is not valid base64", error.Message);
    }

    [Fact]
    public void ConfigurationException_CarriesTheStructuredErrorsAndTheirText()
    {
        var ex = Assert.Throws<PolicyConfigurationException>(() => new SizeLimitPolicy(new() { MaxBytes = 0 }, "max"));

        Assert.Equal([new PolicyOptionError("maxBytes", "must be a positive number of bytes")], ex.OptionErrors);
        Assert.Equal(["maxBytes: must be a positive number of bytes"], ex.Errors);
        Assert.Equal("max", ex.Policy);
    }

    [Fact]
    public void ToString_WithoutAMember_IsTheMessage() =>
        Assert.Equal("is wrong as a whole", new PolicyOptionError("", "is wrong as a whole").ToString());
}
