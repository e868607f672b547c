"""vdata.cards"""
