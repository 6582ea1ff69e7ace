using System.Text;
using System.Text.Json;
using Sluice.Policies.Json;

namespace Sluice.Policies.Tests;

/// <summary>The bounds of json-schema's input guard, exactly where they are documented.</summary>
public class SchemaInputGuardTests
{
    [Theory]
    [InlineData("0", true)]
    [InlineData("-0", true)]
    [InlineData("-0.0e-0", true)]
    [InlineData("1.7976931348623157e308", true)]
    [InlineData("5e-324", true)]
    [InlineData("1e400", true)]
    [InlineData("1E+400", true)]
    [InlineData("-1e-400", true)]
    [InlineData("1e0000000000000400", true)]
    [InlineData("1e401", false)]
    [InlineData("1e-401", false)]
    [InlineData("1e4294967296", false)]
    [InlineData("1e9999999", false)]
    [InlineData("1234567890123456789012345678901234567890", true)]
    [InlineData("-1234567890123456789012345678901234567890", true)]
    [InlineData("1234567890123456789.012345678901234567890", true)]
    [InlineData("12345678901234567890123456789012345678901", false)]
    [InlineData("0.00000000000000000000000000000000000000001", false)]
    public void Numbers_AreInRange_UpTo40DigitsAndExponent400(string number, bool inRange) =>
        Assert.Equal(inRange, SchemaInputGuard.IsInRange(Encoding.ASCII.GetBytes(number)));

    [Theory]
    [InlineData("""{"type":"object","properties":{"n":{"type":"number"}}}""", false)]
    [InlineData("""{"properties":{"n":{"multipleOf":2}}}""", true)]
    [InlineData("""{"items":{"type":"integer"}}""", true)]
    [InlineData("""{"anyOf":[{"enum":["a"]}]}""", true)]
    [InlineData("""{"$ref":"#/$defs/a","$defs":{"a":{"type":"string"}}}""", false)]
    [InlineData("""{"$ref":"https://json-schema.org/draft/2020-12/schema"}""", true)]
    public void TheGuard_AppliesToSchemasThatReadNumbersByValue(string schema, bool applies)
    {
        using var document = JsonDocument.Parse(schema);
        Assert.Equal(applies, SchemaInputGuard.AppliesTo(document.RootElement));
    }

    [Theory]
    [InlineData("""{"a":"\udc00"}""")]
    [InlineData("""{"\ud800":1}""")]
    [InlineData("""[["x\udfff"]]""")]
    public void LoneSurrogates_AreRefused_WhateverTheSchema(string message)
    {
        using var document = JsonDocument.Parse(message);
        Assert.Equal(SchemaInputGuard.InvalidUnicode, SchemaInputGuard.Check(document.RootElement, numbers: false));
    }

    [Fact]
    public void NumbersAreChecked_OnlyWhenTheSchemaReadsThem()
    {
        using var document = JsonDocument.Parse("""{"a":[1e9999999],"b":"\ud83d\ude00"}""");
        Assert.Null(SchemaInputGuard.Check(document.RootElement, numbers: false));
        Assert.Equal(SchemaInputGuard.NumberOutOfRange, SchemaInputGuard.Check(document.RootElement, numbers: true));
    }
}
